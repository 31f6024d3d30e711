//! The xDS server: ADS over gRPC (tonic + envoy-types) serving the filter's configuration
//! through ECDS, and the provider clusters and route table through CDS and RDS. `snapshot`
//! builds resources from the rendered configuration (pure); `stream` is one stream's state
//! machine (pure); this module is the gRPC glue and the loop that notices changes.

pub mod stream;
