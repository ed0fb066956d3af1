//! Implementations of the [ports](crate::ports): `aws` for Lambda, `embedded` for the local
//! runtime. Each sits behind the cargo feature of the same name.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod file_secrets;
