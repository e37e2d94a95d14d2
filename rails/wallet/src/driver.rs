//! A thin UDP adapter around the sans-I/O [`Wallet`]: one socket, the log storage, the address
//! book of peers and the wall clock. It performs the wallet's actions in order (a log append is
//! durable before anything after it is sent) and turns datagrams and due timers into calls. The
//! CLI, the demo, the process tests and the benchmark all drive wallets through it.
//!
//! Addresses: a peer's address is the one its last accepted datagram came from. A one-hop
//! broadcast (the seller's look-up) goes to every address in the broadcast list, which stands in
//! for the radio's broadcast on loopback; a message for a peer whose address is not known yet
//! (after a restart) goes there too, and any other wallet that receives it drops it as
//! misdirected.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::ids::{Millis, WalletId};
use crate::keys::Entropy;
use crate::protocol::Event;
use crate::storage::LogStorage;
use crate::wallet::{Action, Wallet};
use crate::wire::DATAGRAM_BYTES_MAX;

/// Most peers whose addresses the driver remembers; the oldest learnt is forgotten first.
pub const PEERS_MAX: usize = 1024;
/// Shortest socket wait, so that a timer due now is not turned into a busy loop.
pub const WAIT_MIN: Duration = Duration::from_millis(1);

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Counters of what the driver did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams handed to the socket (a broadcast counts once per address).
    pub datagrams_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Received datagrams the wallet refused (malformed, tampered, replayed, misdirected, from an
    /// unknown peer, for an unknown transfer, unexpected).
    pub datagrams_refused: u64,
    /// Sends the socket refused (UDP is best effort; the protocol retransmits).
    pub send_failures: u64,
    /// Log appends, each forced to stable storage.
    pub log_appends: u64,
}

/// What one [`UdpWallet::poll`] brought.
#[derive(Debug, Default)]
pub struct Polled {
    /// Events for the user, in order.
    pub events: Vec<Event>,
    /// A datagram that was dropped, with where it came from and why (for the log).
    pub refused: Option<(SocketAddr, Error)>,
}

/// A wallet bound to a UDP socket and its log storage.
pub struct UdpWallet<S: LogStorage> {
    wallet: Wallet,
    storage: S,
    socket: UdpSocket,
    peers: BTreeMap<WalletId, SocketAddr>,
    learnt: Vec<WalletId>,
    broadcast: Vec<SocketAddr>,
    entropy: Box<dyn Entropy + Send>,
    stats: DriverStats,
    buffer: Vec<u8>,
}

impl<S: LogStorage> core::fmt::Debug for UdpWallet<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UdpWallet")
            .field("wallet", &self.wallet)
            .field("socket", &self.socket.local_addr().ok())
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S: LogStorage> UdpWallet<S> {
    /// Binds the driver. Perform the actions [`Wallet::create`], [`Wallet::open`] or
    /// [`Wallet::recover`] returned with [`UdpWallet::perform`] before anything else.
    pub fn new(
        wallet: Wallet,
        storage: S,
        socket: UdpSocket,
        broadcast: Vec<SocketAddr>,
        entropy: Box<dyn Entropy + Send>,
    ) -> Self {
        UdpWallet {
            wallet,
            storage,
            socket,
            peers: BTreeMap::new(),
            learnt: Vec::new(),
            broadcast,
            entropy,
            stats: DriverStats::default(),
            buffer: vec![0u8; DATAGRAM_BYTES_MAX + 1],
        }
    }

    /// The wallet (for queries).
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// The socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Counters so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// The address last heard from `peer`.
    pub fn peer_address(&self, peer: &WalletId) -> Option<SocketAddr> {
        self.peers.get(peer).copied()
    }

    /// Calls into the wallet with the clock and the entropy, then performs the actions the call
    /// returned. For `start_sale`, `choose_buyer`, `approve`, `decline`, `apply_charge`,
    /// `begin_sync`, `finish_sync`…
    pub fn call<T>(
        &mut self,
        operation: impl FnOnce(&mut Wallet, Millis, &mut dyn Entropy) -> Result<(T, Vec<Action>), Error>,
    ) -> Result<(T, Vec<Event>), Error> {
        let (value, actions) = operation(&mut self.wallet, now_ms(), self.entropy.as_mut())?;
        let events = self.perform(actions)?;
        Ok((value, events))
    }

    /// Turns buyer mode on or off.
    pub fn set_buyer_mode(&mut self, on: bool) {
        self.wallet.set_buyer_mode(on);
    }

    /// Performs actions in order: appends (durable before the next action), sends, broadcasts;
    /// returns the events. A failed append is returned at once and nothing after it is done: the
    /// caller must drop this wallet and reopen it from storage.
    pub fn perform(&mut self, actions: Vec<Action>) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        for action in actions {
            match action {
                Action::Persist(frame) => {
                    self.storage.append(&frame)?;
                    self.stats.log_appends += 1;
                }
                Action::Send { to, datagram } => match self.peers.get(&to).copied() {
                    Some(address) => self.send(&datagram, address),
                    None => {
                        for address in self.broadcast.clone() {
                            self.send(&datagram, address);
                        }
                    }
                },
                Action::Broadcast(datagram) => {
                    for address in self.broadcast.clone() {
                        self.send(&datagram, address);
                    }
                }
                Action::Notify(event) => events.push(event),
            }
        }
        Ok(events)
    }

    fn send(&mut self, datagram: &[u8], address: SocketAddr) {
        match self.socket.send_to(datagram, address) {
            Ok(_) => self.stats.datagrams_sent += 1,
            Err(_) => self.stats.send_failures += 1,
        }
    }

    fn learn(&mut self, peer: WalletId, address: SocketAddr) {
        if self.peers.insert(peer, address).is_none() {
            if self.learnt.len() >= PEERS_MAX {
                let oldest = self.learnt.remove(0);
                self.peers.remove(&oldest);
            }
            self.learnt.push(peer);
        }
    }

    /// Fires due timers, then waits at most `wait_max` (less if a timer falls due sooner) for one
    /// datagram and handles it. Returns the events and, for a dropped datagram, the reason.
    pub fn poll(&mut self, wait_max: Duration) -> Result<Polled, Error> {
        let mut polled = Polled::default();
        let now = now_ms();
        if self.wallet.next_timeout().is_some_and(|at| at <= now) {
            let actions = self.wallet.handle_timeout(now, self.entropy.as_mut())?;
            polled.events = self.perform(actions)?;
        }
        let wait = match self.wallet.next_timeout() {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())).min(wait_max),
            None => wait_max,
        }
        .max(WAIT_MIN);
        if let Err(error) = self.socket.set_read_timeout(Some(wait)) {
            return Err(Error::Storage(crate::error::StorageError::Io(
                alloc::format!("socket: {error}"),
            )));
        }
        let (length, from) = match self.socket.recv_from(&mut self.buffer) {
            Ok(received) => received,
            // Timeouts, and ICMP port-unreachable echoes of earlier sends on Linux.
            Err(_) => return Ok(polled),
        };
        self.stats.datagrams_received += 1;
        let datagram = self.buffer[..length].to_vec();
        match self
            .wallet
            .handle_datagram(&datagram, now_ms(), self.entropy.as_mut())
        {
            Ok(received) => {
                self.learn(received.sender, from);
                polled.events.extend(self.perform(received.actions)?);
            }
            Err(error @ Error::Storage(_)) => return Err(error),
            Err(error) => {
                self.stats.datagrams_refused += 1;
                polled.refused = Some((from, error));
            }
        }
        Ok(polled)
    }

    /// Gives the wallet and its storage back.
    pub fn into_parts(self) -> (Wallet, S) {
        (self.wallet, self.storage)
    }
}
