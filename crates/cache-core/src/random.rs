//! [`fill_random`]: the one read of the OS CSPRNG, the only system call of this crate.
//! A leaf module: ids and tokens are both drawn from it.

/// Error returned when the OS random number generator fails.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// Fills `buf` from the OS CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError)
}
