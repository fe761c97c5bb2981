//! Thin wrappers over the Linux calls the impairer needs: AF_PACKET raw
//! sockets bound to one interface, the thread timer slack, and a SIGTERM /
//! SIGINT flag.
//!
//! Unsafe code is allowed in this module only: neither `std` nor a small,
//! well-kept crate offers a safe way to bind an AF_PACKET socket to an
//! interface (`nix` and `socket2` both need an unsafe `sockaddr_ll`
//! construction), and the calls are few. Each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ETH_P_ALL: u16 = 0x0003;
/// `PACKET_IGNORE_OUTGOING` (Linux ≥ 4.20), not in every libc version.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// One frame read from a packet socket.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The frame's real length (larger than `len` when it was truncated).
    pub wire_len: usize,
    /// The frame was sent by this host (not received), to be ignored.
    pub outgoing: bool,
    /// The interface it was seen on.
    pub ifindex: i32,
}

/// An AF_PACKET raw socket bound to one interface, with a receive timeout.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    name: String,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket; the option value points to a live
    // c_int and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name:?} in this network namespace"),
        ))
    } else {
        Ok(idx as i32)
    }
}

impl PacketSocket {
    /// Opens a raw packet socket that receives every frame arriving on
    /// interface `name` and sends frames out of it.
    pub fn bind(name: &str, recv_timeout: Duration) -> io::Result<Self> {
        let ifindex = ifindex(name)?;
        let proto = ETH_P_ALL.to_be() as libc::c_int;
        // SAFETY: plain system call with constant arguments; the returned
        // descriptor is checked and then owned by `OwnedFd`.
        let raw = cvt(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto)
        })?;
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll and the length is its size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;

        // Best effort: not seeing our own transmissions saves copies; the
        // receive path also checks the packet type.
        let _ = setsockopt_int(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        // A large receive buffer absorbs bursts while a thread is descheduled
        // (SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to SO_RCVBUF).
        if setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20).is_err() {
            let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20);
        }
        let tv = libc::timeval {
            tv_sec: recv_timeout.as_secs() as libc::time_t,
            tv_usec: recv_timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a live timeval and the length is its size.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket {
            fd,
            ifindex,
            name: name.to_string(),
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Reads one frame. Returns `Ok(None)` when the receive timeout passed
    /// or a signal interrupted the call.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut sll_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `sll` and
        // `sll_len` are live and describe a buffer of the given size. With
        // MSG_TRUNC the kernel still writes at most `buf.len()` bytes.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut sll_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let wire_len = n as usize;
        Ok(Some(Received {
            len: wire_len.min(buf.len()),
            wire_len,
            outgoing: sll.sll_pkttype == libc::PACKET_OUTGOING,
            ifindex: sll.sll_ifindex,
        }))
    }

    /// Sends one whole frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Frames the kernel dropped because the socket's buffer was full,
    /// since the last call (the kernel resets the counter on read).
    pub fn take_kernel_drops(&self) -> u64 {
        // SAFETY: tpacket_stats is plain data; all-zero is a valid value.
        let mut st: libc::tpacket_stats = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and describe a buffer of that size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if r < 0 {
            0
        } else {
            u64::from(st.tp_drops)
        }
    }
}

/// Sets the calling thread's timer slack (threads inherit it when spawned),
/// so timed waits wake within about a microsecond of the deadline instead of
/// the default 50 µs.
pub fn set_timer_slack(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument; no memory is
    // passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0);
    }
}

/// When the calling thread runs under SCHED_FIFO (the process was started
/// with `chrt -f`), moves it to FIFO priority `prio`, so the threads that
/// send on time can outrank the ones that only receive. Does nothing under
/// other policies; returns whether the priority was changed.
pub fn raise_fifo_priority(prio: i32) -> bool {
    // SAFETY: plain system calls on the calling thread (pid 0); `param` is
    // a live sched_param.
    unsafe {
        if libc::sched_getscheduler(0) != libc::SCHED_FIFO {
            return false;
        }
        let param = libc::sched_param {
            sched_priority: prio,
        };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Installs handlers so SIGTERM, SIGINT and SIGHUP set a flag (see
/// [`stop_requested`]) instead of killing the process, so it can write its
/// counters on the way out.
pub fn install_stop_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; all-zero is a valid value. The
        // handler only performs an atomic store, which is async-signal-safe.
        // No SA_RESTART: blocking calls return EINTR and loops re-check the
        // flag.
        unsafe {
            let mut sa: libc::sigaction = mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
        }
    }
    Ok(())
}

/// True once a stop signal arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
