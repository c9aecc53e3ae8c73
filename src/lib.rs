pub mod decode;
pub mod derive;
pub mod source;
pub mod telemetry;
