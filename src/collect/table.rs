//! The table `edgemon collect` prints: one line per host with its outcome and
//! duration, then a summary line.

use std::io::Write;
use std::time::Duration;

use super::outcome::HostOutcome;

/// Writes the round's table and summary to `out`.
pub fn print_round(
    out: &mut impl Write,
    outcomes: &[HostOutcome],
    wall: Duration,
) -> std::io::Result<()> {
    let width = outcomes
        .iter()
        .map(|o| o.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:>9}  {:<16}  DETAIL",
        "HOST", "DURATION", "OUTCOME"
    )?;
    for o in outcomes {
        let ms = format!("{} ms", o.duration.as_millis());
        match &o.result {
            Ok(r) => {
                let mem = if r.mem_total > 0 {
                    r.mem_used as f64 * 100.0 / r.mem_total as f64
                } else {
                    0.0
                };
                writeln!(
                    out,
                    "{:width$}  {ms:>9}  {:<16}  cpu {:.1}%  mem {mem:.1}%  uptime {}s",
                    o.host, "ok", r.cpu_percent, r.uptime_s
                )?;
            }
            Err(e) => writeln!(
                out,
                "{:width$}  {ms:>9}  {:<16}  {}",
                o.host,
                e.class.as_str(),
                e.message
            )?,
        }
    }
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    writeln!(
        out,
        "{} hosts: {ok} ok, {} failed; round took {:.2} s",
        outcomes.len(),
        outcomes.len() - ok,
        wall.as_secs_f64()
    )
}
