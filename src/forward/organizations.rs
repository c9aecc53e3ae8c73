//! The organization enrichment table: organization id -> name and tier, from a CSV file that is read
//! again when it changes.
//!
//! The file has the header `organization,name,tier` (in that order; `tier` may be empty) and one row per
//! organization. Fields may be quoted (`"Acme, Inc."`, with `""` for a quote). A file that cannot be read
//! or parsed at a reload leaves the previous table in place (counted and logged).

use crate::lifecycle::Shutdown;
use crate::telemetry::SelfMetrics;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the table knows about one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationInfo {
    /// Display name.
    pub name: Box<str>,
    /// Tier (may be empty).
    pub tier: Box<str>,
}

/// Organization id -> [`OrganizationInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationTable {
    rows: HashMap<Box<str>, OrganizationInfo>,
}

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OrganizationTableError {
    #[error("cannot read {path}: {source}")]
    /// The file cannot be read.
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    /// A line is not `organization,name,tier`.
    Parse {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

impl OrganizationTable {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, OrganizationTableError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| OrganizationTableError::Read {
                path: path.display().to_string(),
                source,
            })?;
        Self::parse(&text)
    }

    /// Parses CSV text.
    pub fn parse(text: &str) -> Result<Self, OrganizationTableError> {
        let fault = |line: usize, message: String| OrganizationTableError::Parse { line, message };
        let mut rows = HashMap::new();
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let header = lines
            .by_ref()
            .find(|(_, l)| !l.trim().is_empty())
            .ok_or_else(|| {
                fault(
                    1,
                    "empty file: expected the header organization,name,tier".into(),
                )
            })?;
        let names = split_csv(header.1).map_err(|m| fault(header.0, m))?;
        if names
            .iter()
            .map(|n| n.trim())
            .ne(["organization", "name", "tier"])
        {
            return Err(fault(
                header.0,
                format!("header must be organization,name,tier, not {:?}", header.1),
            ));
        }
        for (n, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv(line).map_err(|m| fault(n, m))?;
            let [id, name, tier]: [String; 3] = fields.try_into().map_err(|f: Vec<String>| {
                fault(n, format!("expected 3 fields, found {}", f.len()))
            })?;
            if id.is_empty() {
                return Err(fault(n, "empty organization id".into()));
            }
            let info = OrganizationInfo {
                name: name.into(),
                tier: tier.into(),
            };
            if rows.insert(id.clone().into_boxed_str(), info).is_some() {
                return Err(fault(n, format!("organization {id:?} listed twice")));
            }
        }
        Ok(OrganizationTable { rows })
    }

    /// The row of an organization.
    pub fn get(&self, organization: &str) -> Option<&OrganizationInfo> {
        self.rows.get(organization)
    }

    /// How many organizations it lists.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Splits one CSV line (RFC 4180 quoting, no line breaks inside fields).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_owned());
        }
    }
}

/// The current table, swapped whole on reload; readers take it once per batch.
pub type LiveOrganizations = Arc<parking_lot::RwLock<Arc<OrganizationTable>>>;

/// The file's identity for change detection: modification time and length.
pub type Stamp = Option<(SystemTime, u64)>;

/// The file's current [`Stamp`].
pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads the table to serve, and the stamp the file had before it was read (for [`watch`]).
pub fn load_live(path: &Path) -> Result<(LiveOrganizations, Stamp), OrganizationTableError> {
    let seen = stamp(path);
    let table = OrganizationTable::load(path)?;
    Ok((Arc::new(parking_lot::RwLock::new(Arc::new(table))), seen))
}

/// Polls `path` every `every` and swaps in the new table when the file changed since `seen` and parses;
/// stops at shutdown.
pub async fn watch(
    path: PathBuf,
    live: LiveOrganizations,
    mut seen: Stamp,
    every: Duration,
    metrics: Arc<SelfMetrics>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let result = match OrganizationTable::load(&path) {
            Ok(table) => {
                tracing::info!(path = %path.display(), organizations = table.len(), "organization table reloaded");
                *live.write() = Arc::new(table);
                "success"
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "organization table unusable; keeping the previous one");
                "failure"
            }
        };
        metrics
            .enrichment_reloads
            .with_label_values(&[result])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_fields_and_refuses_bad_files() {
        let t = OrganizationTable::parse(
            "organization,name,tier\r\nacme,\"Acme, \"\"the\"\" Inc.\",gold\r\n\nbeta, Beta ,\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(&*t.get("acme").unwrap().name, "Acme, \"the\" Inc.");
        assert_eq!(&*t.get("beta").unwrap().name, "Beta");
        assert_eq!(&*t.get("beta").unwrap().tier, "");
        for (bad, expected) in [
            ("", "empty file"),
            ("id,name,tier\n", "header must be"),
            ("organization,name,tier\na,b\n", "line 2: expected 3 fields"),
            ("organization,name,tier\na,\"b,c\n", "line 2: unterminated"),
            (
                "organization,name,tier\na,b,c\na,d,e\n",
                "line 3: organization \"a\" listed twice",
            ),
        ] {
            let err = OrganizationTable::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_swapped_in_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgs.csv");
        std::fs::write(&path, "organization,name,tier\na,A,gold\n").unwrap();
        let (live, seen) = load_live(&path).unwrap();
        let metrics = Arc::new(SelfMetrics::new());
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let task = tokio::spawn(watch(
            path.clone(),
            live.clone(),
            seen,
            Duration::from_millis(20),
            metrics.clone(),
            shutdown.clone(),
        ));
        let wait_for = |pred: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !pred() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            pred()
        };
        std::fs::write(&path, "organization,name,tier\na,A2,gold\nb,B,\n").unwrap();
        let reloaded = tokio::task::spawn_blocking({
            let live = live.clone();
            move || wait_for(&|| live.read().len() == 2)
        });
        assert!(reloaded.await.unwrap(), "new table swapped in");
        std::fs::write(&path, "broken").unwrap();
        let failed = tokio::task::spawn_blocking({
            let metrics = metrics.clone();
            move || {
                wait_for(&|| {
                    metrics
                        .enrichment_reloads
                        .with_label_values(&["failure"])
                        .get()
                        == 1
                })
            }
        });
        assert!(failed.await.unwrap(), "failure counted");
        assert_eq!(&*live.read().get("a").unwrap().name, "A2", "old table kept");
        shutdown.trigger();
        task.await.unwrap();
    }
}
