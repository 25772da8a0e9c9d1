//! Runs one command inside an unpacked root, in a namespace sandbox, with a timeout.
//!
//! Owns the sandbox: new user, mount, PID, network, IPC and UTS namespaces (the calling user
//! mapped to root inside), the root read-only (one folder bound, or several stacked as a
//! read-only overlay, top first), a fresh `/proc`, a private `/dev` with the harmless device
//! nodes bound from the host, a tmpfs `/tmp`, one writable work folder at [`WORK_DIR`], no
//! network (an empty network namespace), and the kill of everything in it when the timeout
//! passes or when the process that started it dies (a comfypak stopped by a signal leaves no
//! sandbox running). It also owns the foreign-architecture rule: such a root runs only through a
//! qemu-user binfmt_misc handler with the F flag, checked (never registered) here. It must not
//! decide what runs, nor read or write the root outside the sandbox.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RuntimeError;
use crate::target::Arch;

/// Where the work folder appears inside the sandbox.
pub const WORK_DIR: &str = "/tmp/comfypak-work";

/// Device nodes bound from the host into the sandbox's `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Root folders, top first; the last is the base's root. One folder is bound read-only;
    /// several are stacked as a read-only overlay.
    pub lowers: Vec<PathBuf>,
    /// A host folder mounted read-write at [`WORK_DIR`].
    pub work: Option<PathBuf>,
    /// The architecture of the root's programs.
    pub arch: Arch,
    /// Killed (with everything it started) after this long.
    pub timeout: Duration,
    /// Scratch space on the host for the mount point (a folder that may be created).
    pub scratch: PathBuf,
}

/// What a command in the sandbox did.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Exit code (128 + signal when killed by a signal).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl RunOutput {
    /// The last lines of stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

/// The host's architecture.
pub fn host_arch() -> Option<Arch> {
    std::env::consts::ARCH.parse().ok()
}

/// Checks that programs of `arch` can run here: natively, or through an enabled qemu-user
/// binfmt_misc handler with the F (fix binary) flag, which works inside a chroot.
pub fn check_arch_runs(arch: Arch) -> Result<(), RuntimeError> {
    check_arch_runs_in(arch, host_arch(), Path::new("/proc/sys/fs/binfmt_misc"))
}

/// [`check_arch_runs`] against a given host architecture and binfmt_misc folder.
pub fn check_arch_runs_in(
    arch: Arch,
    host: Option<Arch>,
    binfmt_dir: &Path,
) -> Result<(), RuntimeError> {
    if host == Some(arch) {
        return Ok(());
    }
    let qemu = format!("qemu-{}", arch.as_str());
    let handler = binfmt_dir.join(&qemu);
    let problem = match std::fs::read_to_string(&handler) {
        Err(_) if !binfmt_dir.join("status").exists() => {
            format!("binfmt_misc is not mounted at {}", binfmt_dir.display())
        }
        Err(_) => format!("there is no {} handler", handler.display()),
        Ok(text) => {
            let enabled = text.lines().next() == Some("enabled");
            let fix_binary = text
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .is_some_and(|flags| flags.contains('F'));
            if !enabled {
                format!("{} is disabled", handler.display())
            } else if !fix_binary {
                format!(
                    "{} lacks the F flag, so the interpreter cannot be found inside the root",
                    handler.display()
                )
            } else {
                return Ok(());
            }
        }
    };
    Err(RuntimeError::NoBinfmt {
        arch,
        host: host.map_or_else(|| std::env::consts::ARCH.to_string(), |h| h.to_string()),
        problem,
        qemu,
    })
}

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Everything the child needs, allocated before the fork (the child must not allocate).
struct Plan {
    /// The process that starts the sandbox (the outer process checks it is still its parent).
    parent: libc::pid_t,
    setgroups: CString,
    uid_map_path: CString,
    gid_map_path: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    newroot: CString,
    /// One lower: its path and the flags its mount already has (kept on the read-only remount).
    bind: Option<(CString, libc::c_ulong)>,
    /// Several lowers: the overlay options.
    overlay: Option<CString>,
    tmp: CString,
    dev: CString,
    shm: CString,
    proc_: CString,
    devices: Vec<(CString, CString)>,
    dev_links: Vec<(CString, CString)>,
    work: Option<(CString, CString)>,
    tmpfs: CString,
    overlay_fs: CString,
    proc_fs: CString,
    tmp_opts: CString,
    dev_opts: CString,
    slash: CString,
    dot: CString,
}

fn cstr(bytes: &[u8]) -> Result<CString, RuntimeError> {
    CString::new(bytes).map_err(|_| RuntimeError::Sandbox {
        message: format!("{} holds a NUL byte", String::from_utf8_lossy(bytes)),
    })
}

fn cpath(path: &Path) -> Result<CString, RuntimeError> {
    cstr(path.as_os_str().as_bytes())
}

/// The flags a mount already has that a remount in a user namespace must keep.
fn locked_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = cpath(path) else { return 0 };
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    flags
}

impl Sandbox {
    fn plan(&self, newroot: &Path) -> Result<Plan, RuntimeError> {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let (bind, overlay) = match self.lowers.as_slice() {
            [] => {
                return Err(RuntimeError::Sandbox {
                    message: "no root folder to run in".to_string(),
                })
            }
            [one] => (Some((cpath(one)?, locked_flags(one))), None),
            many => {
                let mut dirs = Vec::new();
                for dir in many {
                    let text = dir.as_os_str().as_bytes();
                    if text.iter().any(|b| matches!(b, b':' | b',' | b'\\')) {
                        return Err(RuntimeError::Sandbox {
                            message: format!(
                                "{} holds `:`, `,` or `\\`, which an overlay cannot stack",
                                dir.display()
                            ),
                        });
                    }
                    dirs.push(String::from_utf8_lossy(text).into_owned());
                }
                (
                    None,
                    Some(cstr(format!("lowerdir={}", dirs.join(":")).as_bytes())?),
                )
            }
        };
        let inside = |rel: &str| cpath(&newroot.join(rel));
        let mut devices = Vec::new();
        for name in DEVICES {
            devices.push((
                cstr(format!("/dev/{name}").as_bytes())?,
                inside(&format!("dev/{name}"))?,
            ));
        }
        let mut dev_links = Vec::new();
        for (target, name) in [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
        ] {
            dev_links.push((cstr(target.as_bytes())?, inside(&format!("dev/{name}"))?));
        }
        let work = match &self.work {
            Some(dir) => Some((cpath(dir)?, inside(WORK_DIR.trim_start_matches('/'))?)),
            None => None,
        };
        Ok(Plan {
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
            setgroups: cstr(b"/proc/self/setgroups")?,
            uid_map_path: cstr(b"/proc/self/uid_map")?,
            gid_map_path: cstr(b"/proc/self/gid_map")?,
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            newroot: cpath(newroot)?,
            bind,
            overlay,
            tmp: inside("tmp")?,
            dev: inside("dev")?,
            shm: inside("dev/shm")?,
            proc_: inside("proc")?,
            devices,
            dev_links,
            work,
            tmpfs: cstr(b"tmpfs")?,
            overlay_fs: cstr(b"overlay")?,
            proc_fs: cstr(b"proc")?,
            tmp_opts: cstr(b"mode=1777")?,
            dev_opts: cstr(b"mode=755")?,
            slash: cstr(b"/")?,
            dot: cstr(b".")?,
        })
    }

    /// Runs `argv` (an absolute path inside the root, then its arguments) with exactly `env`,
    /// in `cwd` inside the root, feeding `stdin`. A command still running after the timeout is
    /// killed with everything it started, and that is an error.
    pub fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
        stdin: &[u8],
    ) -> Result<RunOutput, RuntimeError> {
        check_arch_runs(self.arch)?;
        let Some((program, args)) = argv.split_first() else {
            return Err(RuntimeError::Sandbox {
                message: "nothing to run".to_string(),
            });
        };
        std::fs::create_dir_all(&self.scratch).map_err(|source| RuntimeError::Io {
            path: self.scratch.clone(),
            source,
        })?;
        let newroot = self.scratch.join(format!(
            "mnt-{}-{}",
            std::process::id(),
            SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&newroot).map_err(|source| RuntimeError::Io {
            path: newroot.clone(),
            source,
        })?;
        let result = self.run_at(&newroot, program, args, env, cwd, stdin);
        let _ = std::fs::remove_dir(&newroot);
        result
    }

    fn run_at(
        &self,
        newroot: &Path,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: &str,
        stdin: &[u8],
    ) -> Result<RunOutput, RuntimeError> {
        let plan = self.plan(newroot)?;
        let cwd_c = cstr(cwd.as_bytes())?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child and only makes system calls on data
        // prepared above; it allocates nothing.
        unsafe {
            command.pre_exec(move || enter(&plan, &cwd_c));
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|e| RuntimeError::Sandbox {
            message: format!(
                "could not start {program} in the sandbox: {e} (the sandbox needs user \
                 namespaces: sysctl kernel.unprivileged_userns_clone=1 or \
                 user.max_user_namespaces > 0, and overlayfs)"
            ),
        })?;
        let mut stdin_pipe = child.stdin.take();
        let input = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            if let Some(pipe) = stdin_pipe.as_mut() {
                let _ = pipe.write_all(&input);
            }
        });
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let deadline = started + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    // The child is the sandbox's outer process: its death kills PID 1 inside
                    // (parent-death signal), and with it the whole PID namespace.
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return Err(RuntimeError::Sandbox {
                        message: format!("waiting for {program}: {e}"),
                    })
                }
            }
        };
        let _ = feeder.join();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        let elapsed = started.elapsed();
        let Some(status) = status else {
            return Err(RuntimeError::Timeout {
                command: std::iter::once(program.to_string())
                    .chain(args.iter().take(2).cloned())
                    .collect::<Vec<_>>()
                    .join(" "),
                seconds: self.timeout.as_secs_f64(),
            });
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        if code == 125 && stderr.starts_with(b"comfypak sandbox:") {
            return Err(RuntimeError::Sandbox {
                message: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        Ok(RunOutput {
            code,
            stdout,
            stderr,
            elapsed,
        })
    }
}

/// Writes a fixed message to stderr and exits the child with 125 (no allocation).
fn die(step: &'static [u8]) -> ! {
    // SAFETY: writing a static buffer to fd 2 and exiting are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let _ = libc::write(2, b"comfypak sandbox: ".as_ptr().cast(), 18);
        let _ = libc::write(2, step.as_ptr().cast(), step.len());
        let mut digits = [0u8; 12];
        let mut n = errno.unsigned_abs();
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 1 {
                break;
            }
        }
        let _ = libc::write(2, b" failed, errno ".as_ptr().cast(), 15);
        let _ = libc::write(2, digits[i..].as_ptr().cast(), digits.len() - i);
        let _ = libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::_exit(125)
    }
}

fn write_file(path: &CString, bytes: &[u8]) -> bool {
    // SAFETY: plain system calls on a valid C string and buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, bytes.as_ptr().cast(), bytes.len()) == bytes.len() as isize;
        libc::close(fd);
        ok
    }
}

/// In the forked child: enter the namespaces, fork PID 1 of the new PID namespace, build its
/// root and return (to exec) in that grandchild; the child itself waits and passes on the
/// exit status.
fn enter(plan: &Plan, cwd: &CString) -> std::io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: system calls on data prepared before the fork; nothing here allocates.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER) != 0 {
            die(b"unshare(user)");
        }
        // Only this user, mapped to root inside; no supplementary groups.
        let _ = write_file(&plan.setgroups, b"deny");
        if !write_file(&plan.uid_map_path, &plan.uid_map) {
            die(b"writing uid_map");
        }
        if !write_file(&plan.gid_map_path, &plan.gid_map) {
            die(b"writing gid_map");
        }
        if libc::unshare(
            libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS,
        ) != 0
        {
            die(b"unshare(mount, pid, net, ipc, uts)");
        }
        // The outer process dies with the thread that started it (which waits for it to end),
        // so a comfypak killed by a signal takes the sandbox with it: PID 1 dies with the outer
        // process, and everything else inside with PID 1. If comfypak is already gone, stop.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != plan.parent {
            libc::_exit(125);
        }
        // A pipe whose write end only the outer process holds: PID 1 sees it hung up if the
        // outer process died before PID 1 asked to die with it (getppid() cannot tell there:
        // the outer process is outside PID 1's namespace, so it reads 0 either way).
        let mut alive = [0 as libc::c_int; 2];
        if libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            die(b"pipe");
        }
        let pid = libc::fork();
        if pid < 0 {
            die(b"fork");
        }
        if pid > 0 {
            // The outer process: hold no file of the parent (its exec-error pipe among them)
            // but the pipe's write end, and wait for PID 1.
            let keep = alive[1] as u32;
            libc::close(alive[0]);
            if keep > 3 {
                libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
            }
            libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
            let mut status = 0;
            loop {
                let r = libc::waitpid(pid, &mut status, 0);
                if r == pid {
                    break;
                }
                if r < 0 && *libc::__errno_location() != libc::EINTR {
                    libc::_exit(125);
                }
            }
            if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            }
            libc::_exit(128 + libc::WTERMSIG(status));
        }
        // PID 1 of the sandbox: dies with the outer process.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::close(alive[1]);
        let mut outer = libc::pollfd {
            fd: alive[0],
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut outer, 1, 0) != 0 {
            // Hung up (or an error): the outer process is gone.
            libc::_exit(125);
        }
        libc::close(alive[0]);
        if libc::mount(
            null,
            plan.slash.as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null.cast(),
        ) != 0
        {
            die(b"making mounts private");
        }
        if let Some((source, locked)) = &plan.bind {
            if libc::mount(
                source.as_ptr(),
                plan.newroot.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                null.cast(),
            ) != 0
            {
                die(b"binding the root");
            }
            if libc::mount(
                null,
                plan.newroot.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                null.cast(),
            ) != 0
            {
                die(b"making the root read-only");
            }
        }
        if let Some(options) = &plan.overlay {
            if libc::mount(
                plan.overlay_fs.as_ptr(),
                plan.newroot.as_ptr(),
                plan.overlay_fs.as_ptr(),
                libc::MS_RDONLY,
                options.as_ptr().cast(),
            ) != 0
            {
                die(b"mounting the overlay of the layers");
            }
        }
        if libc::mount(
            plan.tmpfs.as_ptr(),
            plan.tmp.as_ptr(),
            plan.tmpfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            plan.tmp_opts.as_ptr().cast(),
        ) != 0
        {
            die(b"mounting /tmp (the root needs a /tmp folder)");
        }
        if libc::mount(
            plan.tmpfs.as_ptr(),
            plan.dev.as_ptr(),
            plan.tmpfs.as_ptr(),
            libc::MS_NOSUID,
            plan.dev_opts.as_ptr().cast(),
        ) != 0
        {
            die(b"mounting /dev (the root needs a /dev folder)");
        }
        for (host, inside) in &plan.devices {
            let fd = libc::open(
                inside.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd < 0 {
                die(b"creating a device mount point");
            }
            libc::close(fd);
            if libc::mount(
                host.as_ptr(),
                inside.as_ptr(),
                null,
                libc::MS_BIND,
                null.cast(),
            ) != 0
            {
                die(b"binding a device node");
            }
        }
        for (target, link) in &plan.dev_links {
            let _ = libc::symlink(target.as_ptr(), link.as_ptr());
        }
        if libc::mkdir(plan.shm.as_ptr(), 0o1777) == 0 {
            let _ = libc::mount(
                plan.tmpfs.as_ptr(),
                plan.shm.as_ptr(),
                plan.tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                plan.tmp_opts.as_ptr().cast(),
            );
        }
        if libc::mount(
            plan.proc_fs.as_ptr(),
            plan.proc_.as_ptr(),
            plan.proc_fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            null.cast(),
        ) != 0
        {
            die(b"mounting /proc (the root needs a /proc folder)");
        }
        if let Some((host, inside)) = &plan.work {
            if libc::mkdir(inside.as_ptr(), 0o755) != 0 {
                die(b"creating the work folder");
            }
            if libc::mount(
                host.as_ptr(),
                inside.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                null.cast(),
            ) != 0
            {
                die(b"binding the work folder");
            }
        }
        if libc::chdir(plan.newroot.as_ptr()) != 0 {
            die(b"entering the root");
        }
        if libc::syscall(libc::SYS_pivot_root, plan.dot.as_ptr(), plan.dot.as_ptr()) != 0 {
            die(b"pivot_root");
        }
        if libc::umount2(plan.dot.as_ptr(), libc::MNT_DETACH) != 0 {
            die(b"detaching the host's root");
        }
        if libc::chdir(cwd.as_ptr()) != 0 {
            die(b"entering the working folder");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binfmt_rules() {
        let dir = tempfile::tempdir().unwrap();
        let binfmt = dir.path();
        // Native: nothing to check.
        assert!(check_arch_runs_in(Arch::X86_64, Some(Arch::X86_64), binfmt).is_ok());
        // Not mounted; what to install is the error's help.
        let e = check_arch_runs_in(Arch::Aarch64, Some(Arch::X86_64), binfmt).unwrap_err();
        let err = e.to_string();
        assert!(err.contains("binfmt_misc is not mounted"), "{err}");
        let help = e.help().unwrap_or_default();
        assert!(help.contains("apt-get install qemu-user-static"), "{help}");
        std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
        let err = check_arch_runs_in(Arch::Aarch64, Some(Arch::X86_64), binfmt)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no ") && err.contains("qemu-aarch64 handler"),
            "{err}"
        );
        std::fs::write(
            binfmt.join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: P\n",
        )
        .unwrap();
        let err = check_arch_runs_in(Arch::Aarch64, Some(Arch::X86_64), binfmt)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks the F flag"), "{err}");
        std::fs::write(
            binfmt.join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n",
        )
        .unwrap();
        assert!(check_arch_runs_in(Arch::Aarch64, Some(Arch::X86_64), binfmt).is_ok());
    }
}
