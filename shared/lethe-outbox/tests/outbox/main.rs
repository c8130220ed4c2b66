//! The crate's black-box tests, in one binary: a real actix-web recipient on 127.0.0.1:0, fresh sled trees,
//! and schedules driven by the `now` passed in.

mod delivery;
mod helpers;
mod signature;
mod storage;
