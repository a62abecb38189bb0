//! Wake-ups from the kernel (inotify) when a file is written or renamed into a watched folder, so a
//! result file is read at once instead of at the next poll.
//!
//! inotify is only a hint: the source still polls every `poll_ms`, which is what finds files on a
//! network mount (where no event arrives for another machine's writes), in a folder that could not
//! be watched, or after the kernel's event queue overflowed. A folder that disappears loses its
//! watch; the watch is added again at every scan, so it comes back with the folder.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::io::unix::AsyncFd;

/// An inotify instance watching the source's folders.
pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<std::mem::MaybeUninit<u8>>,
}

impl Watcher {
    /// A watcher, or `None` (with the reason) where the system has no inotify to give: the source
    /// then polls only.
    pub fn new() -> Result<Watcher, std::io::Error> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        // `AsyncFd::new` is deprecated because a `T` may change or close the descriptor it
        // reports; an `OwnedFd` cannot (it owns it until dropped, and is dropped with the
        // `AsyncFd`), which is what `register` asks of its caller, without `unsafe` here.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Watcher {
            fd,
            buf: vec![std::mem::MaybeUninit::uninit(); 16 * 1024],
        })
    }

    /// Watches `dir` for files written or moved in (again, if it was watched: the kernel keeps
    /// one watch per folder).
    pub fn watch(&self, dir: &Path) -> Result<(), std::io::Error> {
        inotify::add_watch(
            self.fd.get_ref(),
            dir,
            WatchFlags::CLOSE_WRITE | WatchFlags::MOVED_TO | WatchFlags::CREATE,
        )?;
        Ok(())
    }

    /// Waits until something happened in a watched folder (or the kernel's queue overflowed), and
    /// takes every event waiting.
    pub async fn changed(&mut self) {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                // The descriptor is unusable: no wake-ups from here on, polling goes on.
                return std::future::pending().await;
            };
            let mut reader = inotify::Reader::new(self.fd.get_ref(), &mut self.buf);
            let mut any = false;
            loop {
                match reader.next() {
                    Ok(_) => any = true,
                    Err(rustix::io::Errno::AGAIN) => {
                        ready.clear_ready();
                        break;
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                }
            }
            if any {
                return;
            }
        }
    }
}
