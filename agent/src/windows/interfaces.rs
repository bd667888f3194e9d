//! Family `interfaces` on Windows: `GetIfTable2`, one member per interface by its alias (the
//! name `ncpa.cpl` and `Get-NetAdapter` show: `Ethernet`, `Wi-Fi`), sorted, with the options'
//! globs and cap applied as on Linux. Left out always: NDIS filter interfaces (the
//! `...-WFP Native MAC Layer LightWeight Filter-0000` rows, copies of their adapter's
//! counters) and the software loopback (the counterpart of Linux's `lo`, which the default
//! options leave out).
//!
//! - `rx_bytes`/`tx_bytes`: `InOctets`/`OutOctets`; `rx_packets`/`tx_packets`: unicast plus
//!   non-unicast packets; `rx_errors`/`tx_errors`: `InErrors`/`OutErrors`;
//!   `rx_drops`/`tx_drops`: `InDiscards`/`OutDiscards`;
//! - `oper`: `OperStatus` with Linux's `operstate` names (`up`, `down`, `testing`,
//!   `unknown`, `dormant`, `notpresent`, `lowerlayerdown`);
//! - `speed`: `ReceiveLinkSpeed` in Mbit/s, absent when unknown (0 or all ones) or the link
//!   is not up.

use super::from_wide;
use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::interfaces::Interface;
use edgemon_proto::report::family::options::{AgentOptions, any_match};
use windows_sys::Win32::Foundation::NO_ERROR;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    FreeMibTable, GetIfTable2, IF_TYPE_SOFTWARE_LOOPBACK, MIB_IF_ROW2, MIB_IF_TABLE2,
};

/// Bit of `InterfaceAndOperStatusFlags` set on NDIS filter interfaces.
const FILTER_INTERFACE: u8 = 1 << 1;

/// `IF_OPER_STATUS` as Linux's `operstate` word.
pub fn oper_name(status: i32) -> &'static str {
    match status {
        1 => "up",
        2 => "down",
        3 => "testing",
        5 => "dormant",
        6 => "notpresent",
        7 => "lowerlayerdown",
        _ => "unknown",
    }
}

/// A link speed in bit/s as Mbit/s; `None` for unknown (0, all ones) or a link not up.
pub fn speed_mbits(bits: u64, up: bool) -> Option<u64> {
    (up && bits > 0 && bits != u64::MAX).then_some(bits / 1_000_000)
}

/// The figures of one `MIB_IF_ROW2` the family needs, apart from the row itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    /// `Alias`.
    pub alias: String,
    /// `Type` (`IF_TYPE_*`).
    pub if_type: u32,
    /// `InterfaceAndOperStatusFlags`.
    pub flags: u8,
    /// `OperStatus`.
    pub oper: i32,
    /// `ReceiveLinkSpeed`, bit/s.
    pub speed: u64,
    /// In octets, unicast and non-unicast packets, errors, discards.
    pub rx: [u64; 5],
    /// Out octets, unicast and non-unicast packets, errors, discards.
    pub tx: [u64; 5],
}

impl Row {
    fn from_raw(r: &MIB_IF_ROW2) -> Row {
        Row {
            alias: from_wide(&r.Alias),
            if_type: r.Type,
            flags: r.InterfaceAndOperStatusFlags._bitfield,
            oper: r.OperStatus,
            speed: r.ReceiveLinkSpeed,
            rx: [
                r.InOctets,
                r.InUcastPkts,
                r.InNUcastPkts,
                r.InErrors,
                r.InDiscards,
            ],
            tx: [
                r.OutOctets,
                r.OutUcastPkts,
                r.OutNUcastPkts,
                r.OutErrors,
                r.OutDiscards,
            ],
        }
    }

    /// Whether the row is a real interface (neither a filter layer nor the loopback).
    pub fn is_measured(&self) -> bool {
        self.flags & FILTER_INTERFACE == 0
            && self.if_type != IF_TYPE_SOFTWARE_LOOPBACK
            && !self.alias.is_empty()
    }

    /// The row as a member.
    pub fn to_member(&self) -> Interface {
        let up = self.oper == 1;
        Interface {
            name: self.alias.clone(),
            oper: Some(oper_name(self.oper).to_owned()),
            speed: speed_mbits(self.speed, up),
            rx_bytes: Some(self.rx[0]),
            rx_packets: Some(self.rx[1].saturating_add(self.rx[2])),
            rx_errors: Some(self.rx[3]),
            rx_drops: Some(self.rx[4]),
            tx_bytes: Some(self.tx[0]),
            tx_packets: Some(self.tx[1].saturating_add(self.tx[2])),
            tx_errors: Some(self.tx[3]),
            tx_drops: Some(self.tx[4]),
        }
    }
}

/// The rows kept by the options (real interfaces, each alias once, sorted, globs applied,
/// capped) and how many the cap cut.
pub fn select(mut rows: Vec<Row>, options: &AgentOptions) -> (Vec<Row>, usize) {
    rows.retain(|r| r.is_measured() && !any_match(&options.if_exclude, &r.alias));
    rows.sort_by(|a, b| a.alias.cmp(&b.alias));
    rows.dedup_by(|a, b| a.alias == b.alias);
    let max = usize::try_from(options.max_members).unwrap_or(usize::MAX);
    let cut = rows.len().saturating_sub(max);
    rows.truncate(max);
    (rows, cut)
}

/// The interface table now; `None` when `GetIfTable2` fails.
fn rows() -> Option<Vec<Row>> {
    let mut table: *mut MIB_IF_TABLE2 = std::ptr::null_mut();
    // SAFETY: `table` receives a pointer the call allocates; freed below with FreeMibTable.
    if unsafe { GetIfTable2(&mut table) } != NO_ERROR || table.is_null() {
        return None;
    }
    // SAFETY: on success `table` points to a MIB_IF_TABLE2 whose `Table` holds `NumEntries`
    // rows, valid until FreeMibTable.
    let rows = unsafe {
        let n = (*table).NumEntries as usize;
        let first = std::ptr::addr_of!((*table).Table).cast::<MIB_IF_ROW2>();
        std::slice::from_raw_parts(first, n)
            .iter()
            .map(Row::from_raw)
            .collect()
    };
    // SAFETY: `table` came from GetIfTable2 and is freed once.
    unsafe { FreeMibTable(table.cast()) };
    Some(rows)
}

/// The interfaces section, measured now; `None` when the table cannot be read.
pub fn measure(options: &AgentOptions) -> Option<Section> {
    let (rows, cut) = select(rows()?, options);
    let members: Vec<Interface> = rows.iter().map(Row::to_member).collect();
    let mut section = Section::from_typed(&members);
    section.cut = u32::try_from(cut).unwrap_or(u32::MAX);
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(alias: &str, if_type: u32, flags: u8, oper: i32, speed: u64) -> Row {
        Row {
            alias: alias.into(),
            if_type,
            flags,
            oper,
            speed,
            rx: [1000, 10, 2, 1, 3],
            tx: [500, 5, 1, 0, 4],
        }
    }

    #[test]
    fn rows_map_to_members_with_linux_words() {
        let i = row("Ethernet", 6, 1, 1, 1_000_000_000).to_member();
        assert_eq!(
            (i.name.as_str(), i.oper.as_deref(), i.speed),
            ("Ethernet", Some("up"), Some(1000))
        );
        assert_eq!(
            (i.rx_bytes, i.rx_packets, i.rx_errors, i.rx_drops),
            (Some(1000), Some(12), Some(1), Some(3))
        );
        assert_eq!(
            (i.tx_bytes, i.tx_packets, i.tx_errors, i.tx_drops),
            (Some(500), Some(6), Some(0), Some(4))
        );
        let down = row("Wi-Fi", 71, 1, 2, 300_000_000).to_member();
        assert_eq!((down.oper.as_deref(), down.speed), (Some("down"), None));
        assert_eq!(oper_name(7), "lowerlayerdown");
        assert_eq!(oper_name(99), "unknown");
        assert_eq!(speed_mbits(u64::MAX, true), None);
        assert_eq!(speed_mbits(0, true), None);
    }

    #[test]
    fn filters_and_loopback_are_left_out_then_globs_sort_and_cap() {
        let rows = vec![
            row("Wi-Fi", 71, 1, 1, 1),
            row(
                "Ethernet-WFP Native MAC Layer LightWeight Filter-0000",
                6,
                FILTER_INTERFACE | 1,
                1,
                1,
            ),
            row(
                "Loopback Pseudo-Interface 1",
                IF_TYPE_SOFTWARE_LOOPBACK,
                0,
                1,
                1,
            ),
            row("Ethernet", 6, 1, 1, 1),
            row("vEthernet (WSL)", 6, 0, 1, 1),
        ];
        let mut o = AgentOptions::default();
        let names = |(kept, cut): (Vec<Row>, usize)| {
            (kept.into_iter().map(|r| r.alias).collect::<Vec<_>>(), cut)
        };
        assert_eq!(
            names(select(rows.clone(), &o)),
            (
                vec!["Ethernet".into(), "Wi-Fi".into(), "vEthernet (WSL)".into()],
                0
            )
        );
        o.if_exclude = vec!["vEthernet*".into()];
        o.max_members = 1;
        assert_eq!(names(select(rows, &o)), (vec!["Ethernet".into()], 1));
    }

    #[test]
    fn this_host_has_an_interface_table() {
        let s = measure(&AgentOptions::default()).expect("GetIfTable2 answers");
        let ifs: Vec<Interface> = s.typed();
        assert!(
            ifs.iter().all(|i| i.oper.is_some() && i.rx_bytes.is_some()),
            "{ifs:?}"
        );
    }
}
