//! Family `interfaces`: one member per network interface, keyed by its name.
//!
//! Counters are the kernel's cumulative ones (`/sys/class/net/IF/statistics/*`): rates and
//! the error ratio come from two samples, and a counter that goes down was reset (a reboot,
//! a driver reload). `oper` is `operstate` (`up`, `down`, `dormant`, `lowerlayerdown`,
//! `notpresent`, `testing`, `unknown`); `speed` is in Mbit/s and absent where the kernel has
//! none (virtual interfaces, a link that is down).

use super::{FamilySpec, Field, Kind, Member, Typed, counter, t, u};

/// The spec.
pub const SPEC: FamilySpec = FamilySpec {
    id: 3,
    name: "interfaces",
    member: "if",
    key: "name",
    fields: &[
        Field {
            name: "oper",
            kind: Kind::Text,
            unit: "",
            doc: "operational state (up, down, ...)",
            counter: false,
        },
        Field {
            name: "speed",
            kind: Kind::U64,
            unit: "Mbit/s",
            doc: "link speed",
            counter: false,
        },
        counter("rx_bytes", "bytes", "bytes received"),
        counter("rx_packets", "count", "packets received"),
        counter("rx_errors", "count", "receive errors"),
        counter("rx_drops", "count", "received packets dropped"),
        counter("tx_bytes", "bytes", "bytes sent"),
        counter("tx_packets", "count", "packets sent"),
        counter("tx_errors", "count", "transmit errors"),
        counter("tx_drops", "count", "packets dropped on transmit"),
    ],
    doc: "network interfaces: traffic, errors, drops, state, speed",
};

/// Index of `oper`.
pub const OPER: usize = 0;
/// Index of `speed`.
pub const SPEED: usize = 1;
/// Index of `rx_bytes`.
pub const RX_BYTES: usize = 2;
/// Index of `rx_packets`.
pub const RX_PACKETS: usize = 3;
/// Index of `rx_errors`.
pub const RX_ERRORS: usize = 4;
/// Index of `rx_drops`.
pub const RX_DROPS: usize = 5;
/// Index of `tx_bytes`.
pub const TX_BYTES: usize = 6;
/// Index of `tx_packets`.
pub const TX_PACKETS: usize = 7;
/// Index of `tx_errors`.
pub const TX_ERRORS: usize = 8;
/// Index of `tx_drops`.
pub const TX_DROPS: usize = 9;

/// One interface.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interface {
    /// Interface name (the key).
    pub name: String,
    /// Operational state.
    pub oper: Option<String>,
    /// Link speed, Mbit/s.
    pub speed: Option<u64>,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Packets received.
    pub rx_packets: Option<u64>,
    /// Receive errors.
    pub rx_errors: Option<u64>,
    /// Received packets dropped.
    pub rx_drops: Option<u64>,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Packets sent.
    pub tx_packets: Option<u64>,
    /// Transmit errors.
    pub tx_errors: Option<u64>,
    /// Packets dropped on transmit.
    pub tx_drops: Option<u64>,
}

impl Interface {
    /// Whether the link is up (`oper` is `up`).
    pub fn is_up(&self) -> bool {
        self.oper.as_deref() == Some("up")
    }
}

impl Typed for Interface {
    const SPEC: &'static FamilySpec = &SPEC;

    fn to_member(&self) -> Member {
        Member {
            key: super::clip(&self.name).to_owned(),
            values: vec![
                t(&self.oper),
                u(self.speed),
                u(self.rx_bytes),
                u(self.rx_packets),
                u(self.rx_errors),
                u(self.rx_drops),
                u(self.tx_bytes),
                u(self.tx_packets),
                u(self.tx_errors),
                u(self.tx_drops),
            ],
        }
    }

    fn from_member(m: &Member) -> Interface {
        Interface {
            name: m.key.clone(),
            oper: m.text(OPER).map(str::to_owned),
            speed: m.u64(SPEED),
            rx_bytes: m.u64(RX_BYTES),
            rx_packets: m.u64(RX_PACKETS),
            rx_errors: m.u64(RX_ERRORS),
            rx_drops: m.u64(RX_DROPS),
            tx_bytes: m.u64(TX_BYTES),
            tx_packets: m.u64(TX_PACKETS),
            tx_errors: m.u64(TX_ERRORS),
            tx_drops: m.u64(TX_DROPS),
        }
    }
}
