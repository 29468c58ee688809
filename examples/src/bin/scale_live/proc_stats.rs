//! What `/proc` says about one agent process: CPU time, memory, and the TCP sockets it holds.

use std::collections::HashSet;

/// CPU time (user + system) of `pid` in seconds, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = cpu_ticks(&stat)?;
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_sec > 0).then(|| ticks as f64 / per_sec as f64)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may contain spaces and parentheses: fields are counted after the
/// last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// True while `pid` exists and is no zombie (an exited child not yet waited for).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A `kB` field of `/proc/<pid>/status` (e.g. `VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&status, field)
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if name != field {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The TCP sockets `pid` holds open (any state, listeners included): its socket file
/// descriptors matched against the TCP tables of its network namespace
/// (`/proc/<pid>/net/tcp` and `tcp6` show the namespace the process is in).
pub fn tcp_sockets(pid: u32) -> Option<usize> {
    let inodes = socket_inodes(pid)?;
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            n += tcp_table(&text)
                .filter(|row| inodes.contains(&row.inode))
                .count();
        }
    }
    Some(n)
}

/// TCP connections in TIME_WAIT in the namespace of `pid` with `port` at either end (what
/// closed connections leave behind for 60 s).
pub fn time_wait(pid: u32, port: u16) -> Option<usize> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    Some(
        tcp_table(&text)
            .filter(|r| r.state == TIME_WAIT && (r.local_port == port || r.remote_port == port))
            .count(),
    )
}

/// The inodes of the sockets among `pid`'s open file descriptors.
fn socket_inodes(pid: u32) -> Option<HashSet<u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|target| {
                let t = target.to_string_lossy();
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect(),
    )
}

/// The `st` value of TIME_WAIT in `/proc/net/tcp`.
const TIME_WAIT: u8 = 0x06;

/// One row of `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpRow {
    local_port: u16,
    remote_port: u16,
    state: u8,
    inode: u64,
}

/// The rows of a `/proc/net/tcp` (or `tcp6`) table; malformed rows are skipped.
fn tcp_table(text: &str) -> impl Iterator<Item = TcpRow> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit_once(':')?.1, 16).ok();
        Some(TcpRow {
            local_port: port(f.get(1)?)?,
            remote_port: port(f.get(2)?)?,
            state: u8::from_str_radix(f.get(3)?, 16).ok()?,
            inode: f.get(9)?.parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_counts_fields_after_the_command_name() {
        let stat = "4242 (overlay (x) a) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    123 45 0 0 20 0 5 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(168));
        assert_eq!(cpu_ticks("4242 (agent) S 1 2"), None);
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\toverlay-agent\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_field_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_field_kib(status, "VmSwap"), None);
    }

    #[test]
    fn tcp_table_rows() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1A7F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100630A:1A7F 0200630A:9C40 01 00000000:00000000 02:000A7E2B 00000000     0        0 31338 2 0000000000000000 20 4 30 10 -1
   2: 0100630A:9C41 0300630A:1A7F 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
   3: broken
";
        let rows: Vec<TcpRow> = tcp_table(text).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            TcpRow {
                local_port: 6783,
                remote_port: 40000,
                state: 1,
                inode: 31338
            }
        );
        assert_eq!(rows[2].state, TIME_WAIT);
        assert_eq!(rows[2].remote_port, 6783);
    }
}
