//! `kiln keys new`: an ed25519 key pair for signing model packages.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key pair: NAME.key (private, mode 0600) and NAME.pub (public) in DIR.
    New(NewArgs),
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// File name stem of the two key files.
    #[arg(long, default_value = "kiln")]
    pub name: String,
    /// Directory to write them to (created if missing).
    #[arg(long, default_value = "keys")]
    pub out: PathBuf,
}

pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::New(a) => new(a),
    }
}

fn new(a: NewArgs) -> anyhow::Result<ExitCode> {
    if a.name.is_empty() || a.name.contains(['/', '\\']) || a.name.starts_with('.') {
        bail!("--name {:?}: a plain file name stem is expected", a.name);
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let private_path = a.out.join(format!("{}.key", a.name));
    let public_path = a.out.join(format!("{}.pub", a.name));
    for p in [&private_path, &public_path] {
        if p.exists() {
            bail!(
                "{} exists; not replacing a key (choose another --name)",
                p.display()
            );
        }
    }
    let (private, public) = kiln_ml::package::generate_keypair()?;
    private.save(&private_path)?;
    public.save(&public_path)?;
    println!("key {}", public.key_id());
    println!(
        "  private {} (keep it secret; mode 0600)",
        private_path.display()
    );
    println!(
        "  public  {} (give it to whoever verifies)",
        public_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
