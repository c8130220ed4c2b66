//! Black-box tests of the HTTP service, started in-process on port 0 over a fresh store.

mod authz;
mod catalog;
mod collect;
mod decide;
mod drift;
mod health;
mod helpers;
mod limits;
mod malformed;
mod personalizer;
mod privacy;
