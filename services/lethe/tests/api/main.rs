//! Black-box tests of the HTTP service, started in-process on port 0 over a fresh store.

mod authz;
mod collect;
mod decide;
mod health;
mod helpers;
mod limits;
mod malformed;
mod privacy;
