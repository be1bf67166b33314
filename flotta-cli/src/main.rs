//! `flotta`: the command line for flotta fleets.

fn main() {
    eprintln!("flotta: no command implemented in this build yet");
    std::process::exit(2);
}
