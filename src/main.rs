fn main() -> std::process::ExitCode {
    billmirror::cli::main()
}
