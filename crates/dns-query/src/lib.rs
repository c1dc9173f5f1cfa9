//! DNS by hand, as far as a test client needs: an A query with RD set ([`encode_query`]), of a
//! reply the header and the answer section's A records ([`decode_reply`]), and one query sent
//! over UDP that waits for its reply until a deadline ([`query`]).
//!
//! Used by the namespace tests (`testbed`: the query load and the one-shot querier) and by the
//! lab (`kube-e2e`: the `dnsload` binary in the test pods and the driver on the host). No
//! dependency beyond `anyhow`, so `dnsload` stays a small static binary.
mod message;
mod udp;

pub use message::{
    decode_reply, encode_query, encode_reply, first_id, rcode_name, Reply, RCODE_NOERROR,
};
pub use udp::query;
