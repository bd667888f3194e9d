//! Family `units` on Windows: the services that failed, from the service control manager
//! (`EnumServicesStatusExW`, Win32 services in the stopped state), keyed by service name
//! (`Spooler`, `MSSQLSERVER`), so that `unit_ignore` globs and the `unit-failed:NAME` rule
//! work as on Linux.
//!
//! Windows has no "failed" state; the counterpart of a failed systemd unit is a stopped
//! service whose last exit code is an error: it crashed (1067, the process ended
//! unexpectedly), failed to start (1053 and others) or stopped reporting its own error
//! (1066 with a service-specific code). A service stopped cleanly (exit code 0) is inactive,
//! not failed, and so is one never started since boot (1077): manual and trigger-started
//! services sit there normally. `sub` is `stopped`; `result` is `exit-code N` for a
//! service-specific code, `error N` for a Win32 error. Enumerating needs no administrator:
//! the login user's `SC_MANAGER_ENUMERATE_SERVICE` right is enough.
//!
//! The query is a local RPC to `services.exe`; it runs on a worker thread that keeps the
//! manager handle open ([`Watcher`]), under [`DEADLINE`], and while an earlier query is still
//! stuck, none is sent: the section is absent ("not measured") rather than the sample late.

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::units::FailedUnit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use windows_sys::Win32::Foundation::{
    ERROR_MORE_DATA, ERROR_SERVICE_NEVER_STARTED, ERROR_SERVICE_SPECIFIC_ERROR, GetLastError,
};
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
    SC_ENUM_PROCESS_INFO, SC_HANDLE, SC_MANAGER_CONNECT, SC_MANAGER_ENUMERATE_SERVICE,
    SERVICE_INACTIVE, SERVICE_STOPPED, SERVICE_WIN32,
};

/// Deadline of one query of the service control manager.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// Bytes of the first enumeration buffer (the documented most one call fills is 256 KiB).
const FIRST_BUFFER: usize = 64 * 1024;
/// Most enumeration calls per query (each continues where the previous stopped).
const MAX_CALLS: usize = 64;

/// One service's name and last status, as enumerated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// The service name (the key; not the display name).
    pub name: String,
    /// `dwCurrentState` (`SERVICE_STOPPED`, `SERVICE_RUNNING`, ...).
    pub state: u32,
    /// `dwWin32ExitCode`.
    pub win32_exit: u32,
    /// `dwServiceSpecificExitCode`, meaningful when `win32_exit` is 1066.
    pub specific_exit: u32,
}

/// The failed unit `status` is, if it is one: stopped with an error exit code.
pub fn failed(status: &Status) -> Option<FailedUnit> {
    if status.state != SERVICE_STOPPED
        || status.win32_exit == 0
        || status.win32_exit == ERROR_SERVICE_NEVER_STARTED
    {
        return None;
    }
    let result = if status.win32_exit == ERROR_SERVICE_SPECIFIC_ERROR {
        format!("exit-code {}", status.specific_exit)
    } else {
        format!("error {}", status.win32_exit)
    };
    Some(FailedUnit {
        name: status.name.clone(),
        sub: Some("stopped".to_owned()),
        result: Some(result),
    })
}

/// The failed units among `statuses`, sorted by name.
pub fn failed_units(statuses: &[Status]) -> Vec<FailedUnit> {
    let mut units: Vec<FailedUnit> = statuses.iter().filter_map(failed).collect();
    units.sort_by(|a, b| a.name.cmp(&b.name));
    units.dedup_by(|a, b| a.name == b.name);
    units
}

/// What the worker answers: the stopped services, or `None` when the manager refused.
type Answer = Option<Vec<Status>>;

/// Asks the service control manager on a worker thread of its own, which keeps its manager
/// handle open across samples (opening one is an RPC connection to `services.exe`) and opens
/// it again after a failed query. Kept by the sampler for the life of the agent.
#[derive(Default)]
pub struct Watcher {
    /// The worker's request queue (each request carries where to answer); `None` before
    /// the first query and after the worker went away.
    requests: Option<mpsc::Sender<mpsc::Sender<Answer>>>,
    /// Set from a request until its answer; a query past its deadline keeps it set, and no
    /// other is sent meanwhile.
    busy: Arc<AtomicBool>,
}

impl Watcher {
    /// The units section, measured now; `None` when the service control manager cannot be
    /// asked or did not answer within [`DEADLINE`].
    pub fn measure(&mut self) -> Option<Section> {
        if self.busy.swap(true, Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        let sent = match &self.requests {
            Some(requests) => requests.send(tx.clone()).is_ok(),
            None => false,
        };
        if !sent {
            match spawn_worker(self.busy.clone()) {
                Some(requests) if requests.send(tx).is_ok() => self.requests = Some(requests),
                _ => {
                    self.requests = None;
                    self.busy.store(false, Ordering::SeqCst);
                    return None;
                }
            }
        }
        let statuses = rx.recv_timeout(DEADLINE).ok()??;
        Some(Section::from_typed(&failed_units(&statuses)))
    }
}

/// Starts the worker; its queue, or `None` when no thread could be made.
fn spawn_worker(busy: Arc<AtomicBool>) -> Option<mpsc::Sender<mpsc::Sender<Answer>>> {
    let (requests, queue) = mpsc::channel::<mpsc::Sender<Answer>>();
    std::thread::Builder::new()
        .name("services".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut manager = None;
            for reply in queue {
                if manager.is_none() {
                    manager = open_manager();
                }
                let answer = manager.as_ref().and_then(enumerate);
                if answer.is_none() {
                    manager = None;
                }
                busy.store(false, Ordering::SeqCst);
                let _ = reply.send(answer);
            }
        })
        .ok()?;
    Some(requests)
}

/// Closes a service control manager or service handle on drop.
struct ScHandle(SC_HANDLE);

impl Drop for ScHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenSCManagerW or OpenServiceW and is closed once, here.
        unsafe { CloseServiceHandle(self.0) };
    }
}

/// The local service control manager, opened to enumerate services.
fn open_manager() -> Option<ScHandle> {
    // SAFETY: null machine and database names are the local active database.
    let handle = unsafe {
        OpenSCManagerW(
            std::ptr::null(),
            std::ptr::null(),
            SC_MANAGER_CONNECT | SC_MANAGER_ENUMERATE_SERVICE,
        )
    };
    (!handle.is_null()).then_some(ScHandle(handle))
}

/// Every Win32 service in the stopped state; `None` when the manager refuses.
fn enumerate(manager: &ScHandle) -> Option<Vec<Status>> {
    // u64 words, so the entries (pointers and u32s) are aligned.
    let mut buf: Vec<u64> = vec![0; FIRST_BUFFER / 8];
    let mut resume = 0u32;
    let mut out = Vec::new();
    for _ in 0..MAX_CALLS {
        let (mut needed, mut returned) = (0u32, 0u32);
        let bytes = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `bytes` writable, 8-aligned bytes; the counters and the resume
        // handle are valid u32s; a null group name means every service.
        let ok = unsafe {
            EnumServicesStatusExW(
                manager.0,
                SC_ENUM_PROCESS_INFO,
                SERVICE_WIN32,
                SERVICE_INACTIVE,
                buf.as_mut_ptr().cast(),
                bytes,
                &mut needed,
                &mut returned,
                &mut resume,
                std::ptr::null(),
            )
        };
        // SAFETY: no arguments; read right after the call.
        let more = ok == 0 && unsafe { GetLastError() } == ERROR_MORE_DATA;
        if ok == 0 && !more {
            return None;
        }
        let count = usize::try_from(returned).unwrap_or(0);
        let fits = buf.len() * 8 / size_of::<ENUM_SERVICE_STATUS_PROCESSW>();
        // SAFETY: the call wrote `returned` entries at the start of `buf` (never more than
        // fit); their strings point into `buf`, which is not touched until they are copied.
        let entries = unsafe {
            std::slice::from_raw_parts(
                buf.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>(),
                count.min(fits),
            )
        };
        for entry in entries {
            let status = &entry.ServiceStatusProcess;
            out.push(Status {
                // SAFETY: the name is a NUL-terminated string inside `buf` (or null).
                name: unsafe { read_wide(entry.lpServiceName) },
                state: status.dwCurrentState,
                win32_exit: status.dwWin32ExitCode,
                specific_exit: status.dwServiceSpecificExitCode,
            });
        }
        if !more {
            return Some(out);
        }
        if count == 0 {
            // Not even one entry fit: grow to what the call asked for.
            let want = usize::try_from(needed).unwrap_or(0).max(buf.len() * 16);
            buf = vec![0; want.div_ceil(8)];
        }
    }
    Some(out)
}

/// The text of a NUL-terminated UTF-16 string; empty for null.
///
/// # Safety
/// `p` is null or points at a NUL-terminated UTF-16 string.
unsafe fn read_wide(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the string is NUL-terminated, so every unit up to the NUL is readable.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units from `p` were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::System::Services::{
        OpenServiceW, SERVICE_QUERY_STATUS, SERVICE_RUNNING, SERVICE_START, StartServiceW,
    };

    fn status(name: &str, state: u32, win32_exit: u32, specific_exit: u32) -> Status {
        Status {
            name: name.to_owned(),
            state,
            win32_exit,
            specific_exit,
        }
    }

    #[test]
    fn only_a_stopped_service_with_an_error_is_failed() {
        let units = failed_units(&[
            status("Zcrashed", SERVICE_STOPPED, 1067, 0),
            status("clean", SERVICE_STOPPED, 0, 0),
            status("manual", SERVICE_STOPPED, ERROR_SERVICE_NEVER_STARTED, 0),
            status("running", SERVICE_RUNNING, 1067, 0),
            status("own", SERVICE_STOPPED, ERROR_SERVICE_SPECIFIC_ERROR, 42),
            status("own", SERVICE_STOPPED, ERROR_SERVICE_SPECIFIC_ERROR, 42),
        ]);
        let got: Vec<(&str, Option<&str>, Option<&str>)> = units
            .iter()
            .map(|u| (u.name.as_str(), u.sub.as_deref(), u.result.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("Zcrashed", Some("stopped"), Some("error 1067")),
                ("own", Some("stopped"), Some("exit-code 42"))
            ]
        );
    }

    /// The test prefix (tests/windows/wine-prefix.sh) has a demand-start service,
    /// `edgemon-test-failing`, whose program stops it at once with service-specific code 42.
    const FAILING: &str = "edgemon-test-failing";

    /// Starts the prefix's failing service and waits until the manager says it stopped.
    fn start_failing_service() {
        let name = super::super::wide(FAILING);
        // SAFETY: null names are the local database; `name` is NUL-terminated.
        unsafe {
            let manager = OpenSCManagerW(std::ptr::null(), std::ptr::null(), SC_MANAGER_CONNECT);
            assert!(!manager.is_null(), "OpenSCManagerW: {}", GetLastError());
            let manager = ScHandle(manager);
            let service = OpenServiceW(
                manager.0,
                name.as_ptr(),
                SERVICE_START | SERVICE_QUERY_STATUS,
            );
            assert!(
                !service.is_null(),
                "no service {FAILING} in this prefix (made by tests/windows/wine-prefix.sh): {}",
                GetLastError()
            );
            let service = ScHandle(service);
            // Fails (ERROR_SERVICE_SPECIFIC_ERROR or a timeout) when the service stops at
            // once, as this one does; what counts is the state it leaves.
            StartServiceW(service.0, 0, std::ptr::null());
        }
    }

    #[test]
    fn a_service_that_stopped_with_its_own_error_is_a_failed_unit_and_running_ones_are_not() {
        start_failing_service();
        let mut found = None;
        for _ in 0..100 {
            let manager = open_manager().expect("the service manager opens");
            let statuses = enumerate(&manager).expect("the service manager answers");
            if let Some(unit) = failed_units(&statuses)
                .into_iter()
                .find(|u| u.name == FAILING)
            {
                found = Some((unit, statuses));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (unit, statuses) = found.expect("the failing service is a failed unit");
        assert_eq!(unit.result.as_deref(), Some("exit-code 42"));
        assert!(
            statuses.iter().all(|s| s.state == SERVICE_STOPPED),
            "only stopped services are enumerated"
        );
        let mut watcher = Watcher::default();
        for round in 0..3 {
            let section = watcher.measure().expect("a units section");
            let units: Vec<FailedUnit> = section.typed();
            assert!(
                units.iter().any(|u| u.name == FAILING),
                "round {round}: {units:?}"
            );
        }
    }
}
