//! The sender's and the receiver's tests, through a pair of engines on a
//! virtual clock (`util`): what the master sends and retransmits, and what
//! the backup applies, acknowledges and asks for again.

mod receiver;
mod sender;
mod util;
