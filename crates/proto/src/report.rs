//! The stats report an agent sends: a versioned XML document written and
//! parsed with quick-xml.

/// Version of the report format written by this agent.
pub const REPORT_VERSION: u32 = 1;

/// One sample of a host's statistics, as the agent measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Format version the agent wrote.
    pub version: u32,
    /// Agent's clock when the sample was taken, Unix milliseconds.
    pub collected_at_ms: i64,
    /// Total CPU usage, 0 to 100.
    pub cpu_percent: f64,
    /// Per-core CPU usage, 0 to 100 each.
    pub cores: Vec<f64>,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Memory installed, bytes.
    pub mem_total: u64,
    /// Swap in use, bytes.
    pub swap_used: u64,
    /// Swap configured, bytes.
    pub swap_total: u64,
    /// Seconds since boot.
    pub uptime_s: u64,
    /// Boot time, Unix seconds.
    pub boot_time_s: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
    /// The host's own name.
    pub hostname: Option<String>,
    /// Operating system name and version.
    pub os: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// Elements this collector does not know, kept as name and text.
    pub extras: Vec<(String, String)>,
}
