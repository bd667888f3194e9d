//! The host's figures on Windows other than CPU and the families: memory
//! (`GlobalMemoryStatusEx`), the paging file, uptime (`GetTickCount64`), the host name
//! (`GetComputerNameExW(ComputerNameDnsHostname)`), the OS version (`RtlGetVersion` for the
//! real version, which `GetVersionEx` hides from unmanifested programs, and the product
//! strings of `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion`) and the thread count
//! (`GetPerformanceInfo`).

use super::{from_wide, wide};
use windows_sys::Wdk::System::SystemInformation::NtQuerySystemInformation;
use windows_sys::Wdk::System::SystemServices::RtlGetVersion;
use windows_sys::Win32::Foundation::{ERROR_MORE_DATA, ERROR_SUCCESS, STATUS_INFO_LENGTH_MISMATCH};
use windows_sys::Win32::System::ProcessStatus::{GetPerformanceInfo, PERFORMANCE_INFORMATION};
use windows_sys::Win32::System::Registry::{
    HKEY_LOCAL_MACHINE, RRF_RT_REG_DWORD, RRF_RT_REG_SZ, RegGetValueW,
};
use windows_sys::Win32::System::SystemInformation::{
    ComputerNameDnsHostname, GetComputerNameExW, GetSystemInfo, GetTickCount64,
    GlobalMemoryStatusEx, MEMORYSTATUSEX, OSVERSIONINFOW, SYSTEM_INFO,
};

/// Physical memory: installed and available bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `ullTotalPhys`.
    pub total: u64,
    /// `ullAvailPhys`: standby and free pages, what can be had without paging out.
    pub avail: u64,
}

/// Physical memory now.
pub fn memory() -> Option<Memory> {
    // SAFETY: plain integers; zero is valid.
    let mut m: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    m.dwLength = size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: `m` is a valid MEMORYSTATUSEX with its length set.
    if unsafe { GlobalMemoryStatusEx(&mut m) } == 0 {
        return None;
    }
    Some(Memory {
        total: m.ullTotalPhys,
        avail: m.ullAvailPhys.min(m.ullTotalPhys),
    })
}

/// `SystemPageFileInformation`, which windows-sys does not name.
const SYSTEM_PAGE_FILE_INFORMATION: i32 = 18;

/// The head of a `SYSTEM_PAGEFILE_INFORMATION` entry that is read: `NextEntryOffset`,
/// `TotalSize`, `TotalInUse`, `PeakUsage` (u32 each, sizes in pages); the name follows.
const PAGE_FILE_HEAD: usize = 16;

/// Sums the `(in use, total)` pages of the chain of `SYSTEM_PAGEFILE_INFORMATION` entries in
/// the first `len` bytes of `buf` (each entry's `NextEntryOffset` leads to the next, 0 ends);
/// `None` when an entry does not fit.
pub fn sum_page_files(buf: &[u8], len: usize) -> Option<(u64, u64)> {
    let buf = buf.get(..len)?;
    let (mut used, mut total) = (0u64, 0u64);
    let mut at = 0usize;
    if buf.is_empty() {
        return Some((0, 0));
    }
    loop {
        let entry = buf.get(at..at.checked_add(PAGE_FILE_HEAD)?)?;
        let word =
            |i: usize| u32::from_ne_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]);
        total = total.saturating_add(u64::from(word(4)));
        used = used.saturating_add(u64::from(word(8)));
        match word(0) {
            0 => return Some((used, total)),
            next => at = at.checked_add(usize::try_from(next).ok()?)?,
        }
    }
}

/// The paging files: bytes in use and in all (the sum of all paging files, which is what
/// Windows calls swap; not the commit charge, which counts RAM too). `None` when the system
/// does not answer `SystemPageFileInformation` (Wine 8 does not implement it; the sampler
/// then reports 0 of 0); a host
/// without a paging file answers with no entry, 0 of 0.
pub fn page_files() -> Option<(u64, u64)> {
    let mut buf = vec![0u8; 4096];
    let mut returned = 0u32;
    loop {
        let len = u32::try_from(buf.len()).ok()?;
        // SAFETY: `buf` holds `len` writable bytes; `returned` is a valid u32. The buffer of a
        // Vec<u8> may be unaligned for the entries: they are read bytewise below.
        let status = unsafe {
            NtQuerySystemInformation(
                SYSTEM_PAGE_FILE_INFORMATION,
                buf.as_mut_ptr().cast(),
                len,
                &mut returned,
            )
        };
        if status == STATUS_INFO_LENGTH_MISMATCH && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if status < 0 {
            return None;
        }
        break;
    }
    let (used, total) = sum_page_files(&buf, usize::try_from(returned).ok()?)?;
    let page = page_size();
    Some((used.saturating_mul(page), total.saturating_mul(page)))
}

fn page_size() -> u64 {
    // SAFETY: plain integers and pointers; zero is valid, and GetSystemInfo fills it.
    let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid SYSTEM_INFO to fill.
    unsafe { GetSystemInfo(&mut info) };
    match info.dwPageSize {
        0 => 4096,
        size => u64::from(size),
    }
}

/// Milliseconds since boot.
pub fn uptime_ms() -> u64 {
    // SAFETY: no arguments.
    unsafe { GetTickCount64() }
}

/// The DNS host name (without the domain).
pub fn hostname() -> Option<String> {
    let mut buf = vec![0u16; 256];
    loop {
        let mut size = u32::try_from(buf.len()).ok()?;
        // SAFETY: `buf` holds `size` UTF-16 units.
        let ok =
            unsafe { GetComputerNameExW(ComputerNameDnsHostname, buf.as_mut_ptr(), &mut size) };
        if ok != 0 {
            let name = from_wide(buf.get(..size as usize)?);
            return (!name.is_empty()).then_some(name);
        }
        // SAFETY: reads the thread's last error.
        let err = unsafe { windows_sys::Win32::Foundation::GetLastError() };
        if err != ERROR_MORE_DATA || size as usize <= buf.len() || size > 4096 {
            return None;
        }
        buf.resize(size as usize, 0);
    }
}

/// Threads in existence (`GetPerformanceInfo`'s `ThreadCount`): the Windows counterpart of
/// the Linux agent's tasks (`procs`), which counts every thread, each process's first one
/// included; processes alone would be `ProcessCount`.
pub fn threads() -> Option<u64> {
    // SAFETY: plain integers; zero is valid.
    let mut p: PERFORMANCE_INFORMATION = unsafe { std::mem::zeroed() };
    let cb = size_of::<PERFORMANCE_INFORMATION>() as u32;
    p.cb = cb;
    // SAFETY: `p` is a valid PERFORMANCE_INFORMATION of `cb` bytes.
    if unsafe { GetPerformanceInfo(&mut p, cb) } == 0 {
        return None;
    }
    (p.ThreadCount > 0).then_some(u64::from(p.ThreadCount))
}

/// The real version numbers (`RtlGetVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Major version (10 for Windows 10, 11 and Server 2016 and later).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Build number (19045, 20348, 22631, ...).
    pub build: u32,
}

/// What `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion` says, each value when present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductInfo {
    /// `ProductName` (`Windows 10 Pro`, `Windows Server 2022 Datacenter`).
    pub product_name: Option<String>,
    /// `DisplayVersion` (`22H2`; Windows 10 20H2 and later), else `ReleaseId` (`1809`).
    pub display_version: Option<String>,
    /// `CurrentBuild` (`19045`).
    pub current_build: Option<String>,
    /// `UBR`, the update build revision (`3803`).
    pub ubr: Option<u32>,
}

/// The report's `os` and `kernel` strings: `os` is the product name and display version
/// (`Windows 11 Pro 23H2`; Windows 11 still says "Windows 10" in `ProductName`, so a build of
/// 22000 or later is named 11, as `winver` does), `kernel` the version and build with the
/// update revision when the registry's build is the running one (`10.0.22631.2861`).
pub fn os_strings(
    version: Option<Version>,
    info: &ProductInfo,
) -> (Option<String>, Option<String>) {
    let mut product = info
        .product_name
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .or_else(|| version.map(|v| format!("Windows {}.{}", v.major, v.minor)));
    if let (Some(p), Some(v)) = (&mut product, version)
        && v.major == 10
        && v.build >= 22000
        && p.starts_with("Windows 10")
    {
        p.replace_range(.."Windows 10".len(), "Windows 11");
    }
    let os = product.map(|p| match info.display_version.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => format!("{p} {d}"),
        _ => p,
    });
    let kernel = version.map(|v| {
        let same_build = info.current_build.as_deref().map(str::trim) == Some(&v.build.to_string());
        match info.ubr {
            Some(ubr) if same_build => format!("{}.{}.{}.{ubr}", v.major, v.minor, v.build),
            _ => format!("{}.{}.{}", v.major, v.minor, v.build),
        }
    });
    (os, kernel)
}

/// The running version.
pub fn version() -> Option<Version> {
    // SAFETY: plain integers; zero is valid.
    let mut v: OSVERSIONINFOW = unsafe { std::mem::zeroed() };
    v.dwOSVersionInfoSize = size_of::<OSVERSIONINFOW>() as u32;
    // SAFETY: `v` is a valid OSVERSIONINFOW with its size set.
    if unsafe { RtlGetVersion(&mut v) } < 0 {
        return None;
    }
    Some(Version {
        major: v.dwMajorVersion,
        minor: v.dwMinorVersion,
        build: v.dwBuildNumber,
    })
}

const CURRENT_VERSION: &str = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion";

/// The product strings now.
pub fn product_info() -> ProductInfo {
    ProductInfo {
        product_name: reg_string(CURRENT_VERSION, "ProductName"),
        display_version: reg_string(CURRENT_VERSION, "DisplayVersion")
            .or_else(|| reg_string(CURRENT_VERSION, "ReleaseId")),
        current_build: reg_string(CURRENT_VERSION, "CurrentBuild"),
        ubr: reg_dword(CURRENT_VERSION, "UBR"),
    }
}

/// A `REG_SZ` value under `HKLM\key`.
fn reg_string(key: &str, value: &str) -> Option<String> {
    let (key, value) = (wide(key), wide(value));
    let mut buf = vec![0u16; 256];
    loop {
        let mut bytes = u32::try_from(buf.len() * 2).ok()?;
        // SAFETY: `key` and `value` are NUL-terminated; `buf` holds `bytes` writable bytes.
        let err = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut bytes,
            )
        };
        match err {
            ERROR_SUCCESS => {
                let text = from_wide(buf.get(..(bytes as usize / 2).min(buf.len()))?);
                return (!text.is_empty()).then_some(text);
            }
            ERROR_MORE_DATA if bytes as usize > buf.len() * 2 && bytes < 65536 => {
                buf.resize((bytes as usize).div_ceil(2), 0);
            }
            _ => return None,
        }
    }
}

/// A `REG_DWORD` value under `HKLM\key`.
fn reg_dword(key: &str, value: &str) -> Option<u32> {
    let (key, value) = (wide(key), wide(value));
    let mut data = 0u32;
    let mut bytes = size_of::<u32>() as u32;
    // SAFETY: `key` and `value` are NUL-terminated; `data` holds `bytes` writable bytes.
    let err = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_DWORD,
            std::ptr::null_mut(),
            (&mut data as *mut u32).cast(),
            &mut bytes,
        )
    };
    (err == ERROR_SUCCESS).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, display: Option<&str>, build: &str, ubr: Option<u32>) -> ProductInfo {
        ProductInfo {
            product_name: Some(name.into()),
            display_version: display.map(String::from),
            current_build: Some(build.into()),
            ubr,
        }
    }

    #[test]
    fn os_and_kernel_strings() {
        let v = |build| {
            Some(Version {
                major: 10,
                minor: 0,
                build,
            })
        };
        let (os, kernel) = os_strings(
            v(20348),
            &info(
                "Windows Server 2022 Datacenter",
                Some("21H2"),
                "20348",
                Some(2113),
            ),
        );
        assert_eq!(os.as_deref(), Some("Windows Server 2022 Datacenter 21H2"));
        assert_eq!(kernel.as_deref(), Some("10.0.20348.2113"));
        // Windows 11 says 10 in ProductName.
        let (os, _) = os_strings(
            v(22631),
            &info("Windows 10 Pro", Some("23H2"), "22631", Some(1)),
        );
        assert_eq!(os.as_deref(), Some("Windows 11 Pro 23H2"));
        let (os, _) = os_strings(
            v(19045),
            &info("Windows 10 Pro", Some("22H2"), "19045", None),
        );
        assert_eq!(os.as_deref(), Some("Windows 10 Pro 22H2"));
        // The registry's build is not the running one: no revision of another build.
        let (_, kernel) = os_strings(v(19045), &info("Windows 10 Pro", None, "19044", Some(7)));
        assert_eq!(kernel.as_deref(), Some("10.0.19045"));
        // Nothing in the registry (Server Core images stripped, Wine): the numbers.
        let (os, kernel) = os_strings(
            Some(Version {
                major: 6,
                minor: 1,
                build: 7601,
            }),
            &ProductInfo::default(),
        );
        assert_eq!(os.as_deref(), Some("Windows 6.1"));
        assert_eq!(kernel.as_deref(), Some("6.1.7601"));
        assert_eq!(os_strings(None, &ProductInfo::default()), (None, None));
    }

    fn entry(next: u32, total: u32, used: u32) -> Vec<u8> {
        let mut e: Vec<u8> = [next, total, used, used]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        e.resize(next.max(24) as usize, 0);
        e
    }

    #[test]
    fn page_file_entries_are_summed_along_the_chain() {
        let mut buf = entry(40, 1000, 100);
        buf.extend(entry(0, 500, 50));
        assert_eq!(sum_page_files(&buf, buf.len()), Some((150, 1500)));
        assert_eq!(sum_page_files(&buf, 0), Some((0, 0)), "no paging file");
        let mut bad = entry(4000, 1, 1);
        bad.truncate(40);
        assert_eq!(
            sum_page_files(&bad, bad.len()),
            None,
            "next entry out of the buffer"
        );
        assert_eq!(sum_page_files(&buf, buf.len() + 1), None);
    }

    #[test]
    fn this_host_answers() {
        let m = memory().expect("memory");
        assert!(m.total > 0 && m.avail <= m.total, "{m:?}");
        assert!(uptime_ms() > 0);
        assert!(hostname().is_some_and(|h| !h.is_empty()));
        let v = version().expect("version");
        assert!(v.major >= 6, "{v:?}");
        let (os, kernel) = os_strings(Some(v), &product_info());
        assert!(os.is_some() && kernel.is_some());
        assert!(threads().is_some_and(|t| t > 0));
        // Wine 8 answers 0 of 0 or not at all; shown with --nocapture.
        eprintln!("page files (used, total): {:?}", page_files());
        if let Some((used, total)) = page_files() {
            assert!(used <= total, "{used} of {total}");
        }
    }
}
