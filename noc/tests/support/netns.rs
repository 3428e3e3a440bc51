//! A network namespace of the test's own: libnice (GStreamer) and Firefox leave the loopback
//! interface out of ICE, so the media server gets an address on a veth pair there.
#![allow(dead_code)]

use std::process::Command;

/// The media host inside the namespace [`isolate`] makes.
pub const MEDIA_HOST: &str = "10.99.0.1";

/// Moves the calling thread (and every thread and process it starts afterwards) into a new
/// network namespace: `lo` up, a veth pair with [`MEDIA_HOST`] and the default route. Needs
/// root (CI runs as root).
pub fn isolate() -> Result<(), String> {
    // SAFETY: unshare only changes this thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {} (the test needs root)",
            std::io::Error::last_os_error()
        ));
    }
    let host = format!("{MEDIA_HOST}/24");
    let steps: [&[&str]; 6] = [
        &["link", "set", "lo", "up"],
        &[
            "link", "add", "nocv0", "type", "veth", "peer", "name", "nocv1",
        ],
        &["addr", "add", &host, "dev", "nocv0"],
        &["link", "set", "nocv0", "up"],
        &["link", "set", "nocv1", "up"],
        &["route", "add", "default", "dev", "nocv0"],
    ];
    for args in steps {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}
