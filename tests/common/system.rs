//! Fixtures that change the machine, each undone when dropped: a small tmpfs (a disk that fills up)
//! and a network namespace joined to the host by a veth pair (a link that can be cut or slowed). Both
//! need root (as on the CI machines); without it they fail, saying so, rather than skip.

use std::path::Path;
use std::process::Command;

/// Runs a system command that must succeed, naming it when it does not.
pub fn must(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed (this test needs root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of a given size mounted on a fresh folder; unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`.
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let size = format!("size={bytes}");
        let at = dir.path().to_str().unwrap();
        must("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", at]);
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills it with a file `name` until `leave` bytes are free (about: the last block rounds).
    pub fn fill(&self, name: &str, leave: u64) {
        use std::io::Write;
        let path = self.path().join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let len = file.metadata().unwrap().len();
        file.set_len(len.saturating_sub(leave)).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon still holding a file open does not keep the mount alive past the test.
        let _ = Command::new("umount")
            .args(["-l", self.dir.path().to_str().unwrap()])
            .status();
    }
}

/// Tells fixtures of one test process apart.
static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A network namespace joined to the host by a veth pair on a /30 of its own: the host side is
/// [`NetNs::outside`], the namespace's [`NetNs::inside`]. The link can be cut ([`NetNs::cut`]: packets
/// vanish, no reset, like a partition) and slowed ([`NetNs::slow`]). Deleted when dropped.
pub struct NetNs {
    name: String,
    host_if: String,
    ns_if: String,
    inside: std::net::Ipv4Addr,
    outside: std::net::Ipv4Addr,
}

impl NetNs {
    /// Creates the namespace and its link, both up.
    pub fn new() -> NetNs {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names have at most 15 bytes; the /30 is one of 10.213.0.0/16's, by pid and count.
        let tag = format!("{}{n}", pid % 100_000);
        let slot = (pid.wrapping_mul(7).wrapping_add(n)) % 16_384;
        let base = u32::from(std::net::Ipv4Addr::new(10, 213, 0, 0)) + slot * 4;
        let ns = NetNs {
            name: format!("hxobsd{tag}"),
            host_if: format!("hxh{tag}"),
            ns_if: format!("hxn{tag}"),
            outside: (base + 1).into(),
            inside: (base + 2).into(),
        };
        must("ip", &["netns", "add", &ns.name]);
        let (h, i) = (ns.host_if.as_str(), ns.ns_if.as_str());
        must("ip", &["link", "add", h, "type", "veth", "peer", "name", i]);
        must("ip", &["link", "set", i, "netns", &ns.name]);
        must(
            "ip",
            &["addr", "add", &format!("{}/30", ns.outside), "dev", h],
        );
        must("ip", &["link", "set", h, "up"]);
        let inside = format!("{}/30", ns.inside);
        ns.exec(&["ip", "addr", "add", &inside, "dev", i]);
        ns.exec(&["ip", "link", "set", i, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; it must succeed.
    fn exec(&self, command: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        must("ip", &args);
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's address.
    pub fn inside(&self) -> std::net::Ipv4Addr {
        self.inside
    }

    /// The host's address on the link.
    pub fn outside(&self) -> std::net::Ipv4Addr {
        self.outside
    }

    /// Cuts the link: the host side goes down, and packets either way are lost without a reset.
    pub fn cut(&self) {
        must("ip", &["link", "set", &self.host_if, "down"]);
    }

    /// Joins the link again.
    pub fn heal(&self) {
        must("ip", &["link", "set", &self.host_if, "up"]);
    }

    /// Limits both directions to `kbit` kilobits per second, queueing up to `latency_ms` (token
    /// bucket: this kernel has no netem).
    pub fn slow(&self, kbit: u32, latency_ms: u32) {
        let (rate, latency) = (format!("{kbit}kbit"), format!("{latency_ms}ms"));
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "16kb", "latency", &latency,
        ];
        let mut host = vec!["qdisc", "replace", "dev", &self.host_if];
        host.extend_from_slice(&tbf);
        must("tc", &host);
        let mut inside = vec!["tc", "qdisc", "replace", "dev", &self.ns_if];
        inside.extend_from_slice(&tbf);
        self.exec(&inside);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes once nothing runs in it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
