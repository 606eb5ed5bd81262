//! Socket facts read with getsockopt, once for faultline: the socket cookie the kernel's
//! TCP tracepoints carry, by which loadgen's events and the kernel's are joined.
use std::os::fd::AsRawFd;

/// `getsockopt(SO_COOKIE)`: the 64-bit id the kernel's tcp tracepoints carry for this
/// socket. The kernel assigns it on first use and never changes it.
pub fn cookie(fd: &impl AsRawFd) -> std::io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid fd and an out-buffer of exactly the length passed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(v)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_has_one_cookie_and_a_non_socket_none() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = cookie(&s).unwrap();
        assert_ne!(c, 0);
        assert_eq!(cookie(&s).unwrap(), c, "the cookie does not change");
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_ne!(cookie(&other).unwrap(), c);
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(cookie(&f).unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
    }
}
