//! The app threads of a worker (`--threads N` > 1, or a request whose body streams).
//!
//! Each thread takes jobs from one queue; a job holds the GIL only while Python runs and
//! releases it whenever it waits for the connection.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

pub type Job = Box<dyn FnOnce() + Send>;

pub struct AppPool {
    jobs: Sender<Job>,
}

impl AppPool {
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("app-{n}"))
                .spawn(move || run(&queue))?;
        }
        Ok(AppPool { jobs })
    }

    pub fn submit(&self, job: Job) {
        // The threads live as long as the worker process; a send can only fail if they
        // all died, and then the job's channels drop and the request gets its 500.
        let _ = self.jobs.send(job);
    }
}

fn run(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job();
    }
}
