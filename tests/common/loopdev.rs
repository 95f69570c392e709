//! Loop devices, file systems on them and mounts for the volume tests; each
//! is undone on drop (also when a test panics), in reverse order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Whether the test may run: root and every tool present. Missing pieces fail
/// the test under CI=true (DESIGN.md: a required component missing is a
/// failure there) and skip it, with a message, elsewhere.
pub fn require(test: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools.iter().filter(|t| which(t).is_none()).map(|t| t.to_string()).collect();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (loop devices and mounts)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        missing.push("/dev/loop-control".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: needs {} (apt-get install btrfs-progs util-linux)", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    path.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

/// Run a command; panic with its stderr unless it succeeds. Returns stdout.
#[track_caller]
pub fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("{}: {e}", argv[0]));
    assert!(out.status.success(), "{} failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image file attached to a loop device.
pub struct LoopDevice {
    pub dev: PathBuf,
}

impl LoopDevice {
    pub fn attach(image: &Path) -> LoopDevice {
        let dev = sh(&["losetup", "--find", "--show", &image.to_string_lossy()]);
        LoopDevice { dev: PathBuf::from(dev.trim()) }
    }

    pub fn path(&self) -> &str {
        self.dev.to_str().expect("loop device path")
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("--detach").arg(&self.dev).status();
    }
}

/// A mounted file system.
pub struct Mounted {
    pub dir: PathBuf,
}

impl Mounted {
    pub fn mount(source: &str, dir: &Path, opts: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).expect("mount point");
        let mut argv = vec!["mount"];
        argv.extend_from_slice(opts);
        let d = dir.to_string_lossy().into_owned();
        argv.extend_from_slice(&[source, &d]);
        sh(&argv);
        Mounted { dir: dir.to_path_buf() }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A frozen file system cannot be unmounted: thaw first (fails harmlessly when not frozen).
        let _ = Command::new("fsfreeze").arg("--unfreeze").arg(&self.dir).stderr(std::process::Stdio::null()).status();
        for _ in 0..50 {
            if Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("umount {} kept failing; detaching lazily", self.dir.display());
        let _ = Command::new("umount").arg("--lazy").arg(&self.dir).status();
    }
}

/// A file system of `fstype` on a fresh loop device, mounted in a temporary directory.
/// Fields drop in order: unmount, detach, delete the image.
pub struct LoopFs {
    pub mount: Mounted,
    pub dev: LoopDevice,
    pub dir: tempfile::TempDir,
}

impl LoopFs {
    pub fn new(fstype: &str, size_mib: u64) -> LoopFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        let f = std::fs::File::create(&image).expect("image");
        f.set_len(size_mib << 20).expect("image size");
        let dev = LoopDevice::attach(&image);
        match fstype {
            "btrfs" => sh(&["mkfs.btrfs", "-q", "-f", dev.path()]),
            "ext4" => sh(&["mkfs.ext4", "-q", "-F", dev.path()]),
            other => sh(&[&format!("mkfs.{other}"), dev.path()]),
        };
        let mount = Mounted::mount(dev.path(), &dir.path().join("mnt"), &[]);
        LoopFs { mount, dev, dir }
    }

    pub fn root(&self) -> &Path {
        &self.mount.dir
    }
}
