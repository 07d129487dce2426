//! A refused program's verifier log: one line for the console, the whole log in a file.

use std::path::{Path, PathBuf};

/// Whether `l` is the verifier's trace (instructions, register states, source lines,
/// statistics) rather than its verdict.
fn is_trace(l: &str) -> bool {
    let starts_digit_colon = l
        .split_once(':')
        .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    starts_digit_colon
        || l.starts_with("; ")
        || l.starts_with("from ")
        || l.starts_with("processed ")
        || l.starts_with("verification time")
        || l.starts_with("stack depth")
        || l.starts_with("func#")
        || l.starts_with("last_idx")
        || l.starts_with("regs=")
        || l.starts_with("mark_precise")
        || l.starts_with("-- END")
        || is_register_state(l)
}

/// `R1=ctx() R2_w=pkt(...)`: register states, not complaints about a register.
fn is_register_state(l: &str) -> bool {
    l.starts_with('R')
        && l[1..].starts_with(|c: char| c.is_ascii_digit())
        && l.contains('=')
        && !l.contains("expected")
        && !l.contains("invalid")
}

/// The verifier's verdict: its last line that is not trace (the error comes right before
/// its statistics); the last line at all if every line looks like trace.
pub fn summary(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| !is_trace(l))
        .or(lines.last())
        .map_or_else(|| "(empty verifier log)".to_string(), |l| l.to_string())
}

/// Where the full log of `program` goes: `dir/verifier-<program>.log`.
pub fn log_path(dir: &Path, program: &str) -> PathBuf {
    dir.join(format!("verifier-{program}.log"))
}

/// Writes `log` for `program` under `dir` (created if needed), else under the temporary
/// directory; the path written, or `None` if neither took it.
pub fn save(dir: &Path, program: &str, log: &str) -> Option<PathBuf> {
    [dir.to_path_buf(), std::env::temp_dir()]
        .into_iter()
        .find_map(|d| {
            std::fs::create_dir_all(&d).ok()?;
            let p = log_path(&d, program);
            std::fs::write(&p, log).ok()?;
            Some(p)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_found_under_the_trace() {
        let log = "func#0 @0\n0: R1=ctx() R10=fp0\n; let x = y; @ main.rs:12\n0: (61) r2 = *(u32 *)(r1 +4)   ; R1=ctx() R2_w=pkt_end()\n1: (0f) r3 += r4\nmath between pkt pointer and register with unbounded min value is not allowed\nprocessed 1234 insns (limit 1000000) max_states_per_insn 4 total_states 100 peak_states 90 mark_read 20\n";
        assert_eq!(
            summary(log),
            "math between pkt pointer and register with unbounded min value is not allowed"
        );
        let helper = "0: R1=ctx() R10=fp0\n0: (85) call bpf_xdp_adjust_meta#54\nprogram of this type cannot use helper bpf_xdp_adjust_meta#54\nprocessed 1 insns (limit 1000000)\n";
        assert_eq!(
            summary(helper),
            "program of this type cannot use helper bpf_xdp_adjust_meta#54"
        );
        assert_eq!(
            summary("R2 invalid mem access 'scalar'\n"),
            "R2 invalid mem access 'scalar'"
        );
        assert_eq!(summary(""), "(empty verifier log)");
        assert_eq!(summary("0: (95) exit\n"), "0: (95) exit");
    }

    #[test]
    fn the_log_lands_in_the_directory_asked_for() {
        let dir = std::env::temp_dir().join(format!("ovl-verifier-test-{}", std::process::id()));
        let p = save(&dir, "ovl_x", "the log").expect("writable");
        assert_eq!(p, dir.join("verifier-ovl_x.log"));
        assert_eq!(std::fs::read_to_string(&p).ok().as_deref(), Some("the log"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
