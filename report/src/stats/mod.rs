//! The computations behind the report's figures. Pure functions over
//! numbers: nothing here reads files or draws.
