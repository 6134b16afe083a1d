//! One relay thread: an epoll loop over the sockets of its flows. Each wake-up applies the
//! queued commands first, then relays from every socket found readable. Flows live in slots
//! reused through a free list; epoll tokens carry the slot's generation so a stale event never
//! reaches the flow that took over a slot.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::forward::{relay_socket, Flow};
use super::shared::{Cmd, Events, FlowShared};
use super::sys::{self, Batch, Epoll, EventFd, Ready};
use super::FlowId;

/// epoll token of the wake-up eventfd (flow tokens never reach it: see [`token`]).
pub(super) const WAKE_TOKEN: u64 = u64::MAX;

/// Ready descriptors taken per `epoll_wait`.
const READY_PER_WAIT: usize = 256;

/// Epoll token of a flow socket: slot index, slot generation (so an event returned for a socket
/// closed during the same loop pass never reaches the flow that reused its slot), side.
fn token(slot: usize, gen: u32, side: usize) -> u64 {
    ((slot as u64) << 32) | (u64::from(gen & 0x7fff_ffff) << 1) | side as u64
}

pub(super) struct Worker {
    pub(super) epoll: Epoll,
    pub(super) wake: Arc<EventFd>,
    pub(super) rx: mpsc::Receiver<Cmd>,
    pub(super) strict: bool,
    pub(super) batch_size: usize,
    pub(super) epoch: Instant,
    pub(super) events: Arc<Events>,
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<usize>,
    pub(super) index: HashMap<FlowId, usize>,
}

pub(super) struct Slot {
    gen: u32,
    flow: Option<Flow>,
}

impl Worker {
    pub(super) fn run(mut self) {
        let mut batch = Batch::new(self.batch_size);
        let mut ready = Ready::with_capacity(READY_PER_WAIT);
        loop {
            match self.epoll.wait(&mut ready) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!("relay epoll_wait failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            // Commands first: a flow opened, re-targeted or gated before its packets arrived
            // is treated as such. Generations in the tokens keep events of sockets closed
            // here away from flows that reuse their slots.
            if ready.tokens().any(|t| t == WAKE_TOKEN) && !self.commands() {
                return;
            }
            let now_ms = self.epoch.elapsed().as_millis() as u64;
            for tok in ready.tokens() {
                if tok == WAKE_TOKEN {
                    continue;
                }
                let slot = (tok >> 32) as usize;
                let side = (tok & 1) as usize;
                let gen = ((tok >> 1) & 0x7fff_ffff) as u32;
                if let Some(s) = self.slots.get_mut(slot) {
                    if s.gen & 0x7fff_ffff == gen {
                        if let Some(flow) = s.flow.as_mut() {
                            let ev = relay_socket(flow, side, &mut batch, self.strict, now_ms);
                            if let Some(ev) = ev {
                                self.events.push(ev);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies queued commands; false on shutdown.
    fn commands(&mut self) -> bool {
        self.wake.drain();
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Open {
                    id,
                    socks,
                    remotes,
                    shared,
                } => self.open(id, socks, remotes, shared),
                Cmd::SetRemote { id, side, remote } => {
                    if let Some(flow) = self.flow_mut(id) {
                        flow.remote[side] = remote;
                        flow.latched[side] = None;
                        flow.reported = false;
                        flow.update_dest(side);
                        flow.publish_latch();
                    }
                }
                Cmd::Close { id, done } => {
                    if let Some(slot) = self.index.remove(&id) {
                        if let Some(flow) = self.slots[slot].flow.take() {
                            for s in &flow.socks {
                                self.epoll.del(s.as_raw_fd());
                            }
                            drop(flow);
                        }
                        self.free.push(slot);
                    }
                    let _ = done.send(());
                }
                Cmd::Shutdown => return false,
            }
        }
        true
    }

    fn flow_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        let slot = *self.index.get(&id)?;
        self.slots[slot].flow.as_mut()
    }

    fn open(
        &mut self,
        id: FlowId,
        socks: [Socket; 2],
        remote: [Option<SocketAddr>; 2],
        shared: Arc<FlowShared>,
    ) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s].gen = self.slots[s].gen.wrapping_add(1);
                s
            }
            None => {
                self.slots.push(Slot { gen: 0, flow: None });
                self.slots.len() - 1
            }
        };
        let gen = self.slots[slot].gen;
        let v6 = socks
            .each_ref()
            .map(|s| sys::bound_addr(s).is_some_and(|a| a.is_ipv6()));
        for (side, s) in socks.iter().enumerate() {
            if let Err(e) = self.epoll.add(s.as_raw_fd(), token(slot, gen, side)) {
                tracing::error!("relay flow {id:?}: cannot watch its socket: {e}");
            }
        }
        let mut flow = Flow {
            id,
            socks,
            remote,
            latched: [None; 2],
            dest: [None; 2],
            reported: false,
            v6,
            shared,
        };
        flow.update_dest(0);
        flow.update_dest(1);
        self.slots[slot].flow = Some(flow);
        self.index.insert(id, slot);
    }
}
