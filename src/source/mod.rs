//! The source side: starting a source ([`start`]), its poll loop
//! ([`poller`]) with the pages it has in flight (`prefetch`, how many:
//! [`depth`]) and the retries of each (`fetch`), the audit-log endpoint
//! ([`client`]) and the parsing of its pages ([`page`]), and the progress
//! it reports during a backfill ([`progress`]). HTTP itself is
//! [`crate::http`]'s.

pub mod client;
pub mod depth;
mod fetch;
pub mod page;
pub mod poller;
mod prefetch;
pub mod progress;
pub mod start;
