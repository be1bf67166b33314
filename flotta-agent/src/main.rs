//! `flotta-agent`: the reference device agent, a thin wrapper around `flotta-agent-lib`.

fn main() {
    eprintln!("flotta-agent: the device agent is not available in this build yet");
    std::process::exit(2);
}
