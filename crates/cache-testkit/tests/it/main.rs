//! The testkit's own tests, one binary: the suite passes on a correct reference store
//! ([`reference`]) and fails, for the reason it names, on broken ones ([`broken`]).

mod broken;
mod reference;
