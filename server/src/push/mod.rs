//! Push notifications (docs/protocol.md §24): devices' push targets, the users' notification
//! settings, the planner that turns committed log entries into deliveries, and the sender that
//! hands them to the providers and keeps the ledger.

pub mod providers;
