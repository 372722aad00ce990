//! `--netns`: the nodes run in network namespaces the run creates, and node-to-node cuts are
//! nftables rules inside them instead of proxy link modes.
//!
//! Pieces so far: [`layout`] (names and addresses, pure) and [`rules`] (the nftables text, pure).
//! Rules: it names only namespaces of this run and never the root namespace's interfaces.

pub mod layout;
pub mod rules;

pub use layout::Layout;
