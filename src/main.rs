use clap::{Parser, Subcommand};

/// Lifeboat: backups, restore drills and blue-green cutovers as Kubernetes custom resources.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers, the health and metrics server and leader election.
    Operator,
    /// Run one step of the data path inside a Job.
    #[command(subcommand)]
    Agent(lifeboat::agent::AgentCommand),
    /// Print the CustomResourceDefinitions generated from the Rust types as a YAML stream.
    Crds {
        /// Write one file per kind into this directory instead of printing to stdout.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Operator => {
            eprintln!("lifeboat operator: not yet implemented");
            2
        }
        Command::Agent(command) => lifeboat::agent::run(command).await,
        Command::Crds { out_dir } => match lifeboat::crdgen::write(out_dir.as_deref()) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("lifeboat crds: {error}");
                1
            }
        },
    };
    std::process::exit(code);
}
