//! The `tessera` binary: a thin shell over the library's CLI.

fn main() {
    std::process::exit(tessera::cli::run());
}
