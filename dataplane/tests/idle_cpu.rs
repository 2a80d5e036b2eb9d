//! An idle data plane sleeps: with keep-alive connections open (to the
//! client and, pooled, to the app) and no traffic, its cores use no CPU to
//! speak of. This guards the io_uring set-up of the patched glommio
//! (`vendor/glommio/PALISADE.md`): a ring flag under which the executor no
//! longer parks (`IORING_SETUP_DEFER_TASKRUN` does that to glommio 0.9: an
//! idle data plane built with it used a whole core) must not land.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::*;

const H: &str = "demo.test.proxy.test";

/// Seconds of user + system CPU the process has used (`/proc/PID/stat`
/// fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command name (field 2) may hold spaces; count from after it.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

#[test]
fn an_idle_data_plane_uses_almost_no_cpu() {
    let origin = origin(demo_app("demo.test"));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    // A kept-alive client connection and a pooled upstream one stay open.
    let mut client = dp.connect();
    for _ in 0..20 {
        client.write_all(&get(H, "/")).expect("write");
        let response = Reader::new(&mut client).response(false);
        assert_eq!(response.status, 200);
    }
    // Let start-up work (snapshot compile, first log flush) finish.
    std::thread::sleep(Duration::from_millis(300));
    let window = Duration::from_secs(2);
    let (start, used_before) = (Instant::now(), cpu_seconds(dp.pid()));
    std::thread::sleep(window);
    let used = cpu_seconds(dp.pid()) - used_before;
    let elapsed = start.elapsed().as_secs_f64();
    // A parked core wakes for timers only (milliseconds over the window);
    // a spinning one uses most of a core even on a loaded machine.
    assert!(
        used < 0.2 * elapsed,
        "the idle data plane used {used:.2} s of CPU in {elapsed:.2} s"
    );
    // And it still answers at once on the idle connection.
    client.write_all(&get(H, "/")).expect("write");
    assert_eq!(Reader::new(&mut client).response(false).status, 200);
}
