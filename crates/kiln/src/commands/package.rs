//! `kiln package verify`: checks a model package's file digests and its signature against
//! trusted public keys. The package is a folder, or a registered version (`models:/NAME/V`,
//! `models:/NAME@ALIAS`) whose package is fetched from the artifact store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_ml::{Package, TrustedKeys};

use super::data::{Ctx, ProjectArgs};

#[derive(Args, Debug)]
pub struct PackageArgs {
    #[command(subcommand)]
    pub command: PackageCommand,
}

#[derive(Subcommand, Debug)]
pub enum PackageCommand {
    /// Verify a package: every file against the manifest's sha256, and the signature against
    /// trusted keys. Exit status 1 when it does not verify.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// A package folder, `models:/NAME/VERSION` or `models:/NAME@ALIAS`.
    pub package: String,
    /// Public key files or folders of `*.pub` files to trust (repeatable; also
    /// KILN_TRUSTED_KEYS, `:`-separated).
    #[arg(long = "trusted-key", env = "KILN_TRUSTED_KEYS", value_delimiter = ':')]
    pub trusted_keys: Vec<PathBuf>,
    /// Accept an unsigned package (digests are still checked).
    #[arg(long)]
    pub allow_unsigned: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PackageArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PackageCommand::Verify(a) => verify(a),
    }
}

/// A registered version's files, downloaded into a temporary folder.
fn fetch_registered(ctx: &Ctx, reference: &str) -> anyhow::Result<kiln_release::Fetched> {
    let (mv, _) = super::lineage::resolve(ctx, reference)?;
    let artifacts = ctx.artifacts()?;
    let fetched = ctx
        .rt
        .block_on(kiln_release::fetch_version(ctx.store()?, &artifacts, &mv))?;
    if fetched.kind() != kiln_release::VersionKind::KilnPackage {
        bail!(
            "version {} of `{}` is {}, not a Kiln package",
            mv.version,
            mv.name,
            fetched.kind().as_str()
        );
    }
    Ok(fetched)
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (_fetched, dir) = if a.package.starts_with("models:/") {
        let ctx = Ctx::new(&a.project)?;
        let f = fetch_registered(&ctx, &a.package)?;
        let d = f.dir().to_path_buf();
        (Some(f), d)
    } else {
        (None, PathBuf::from(&a.package))
    };
    let trusted = TrustedKeys::load(&a.trusted_keys).context("cannot load the trusted keys")?;
    let opened = Package::open(&dir);
    let (digest, files, signature): (
        Option<String>,
        Result<usize, String>,
        Result<String, String>,
    ) = match &opened {
        Ok(p) => {
            let sig = match p.verify_signature(&trusted) {
                Ok(key) => Ok(format!("signed by trusted key {key}")),
                Err(kiln_ml::MlError::Package(kiln_ml::package::PackageError::NotSigned))
                    if a.allow_unsigned =>
                {
                    Ok("not signed (allowed by --allow-unsigned)".into())
                }
                Err(e) => Err(e.to_string()),
            };
            (
                Some(p.digest().to_string()),
                Ok(p.manifest().files.len()),
                sig,
            )
        }
        Err(e) => (None, Err(e.to_string()), Err("not checked".into())),
    };
    let ok = files.is_ok() && signature.is_ok();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "package": a.package,
                "verified": ok,
                "digest": digest,
                "files": files.as_ref().map_err(|e| e.clone()).err(),
                "files_checked": files.as_ref().ok(),
                "signature": match &signature { Ok(s) | Err(s) => s },
            }))?
        );
    } else {
        println!(
            "{} {}",
            if ok { "VERIFIED" } else { "NOT VERIFIED" },
            a.package
        );
        if let Some(d) = &digest {
            println!("  digest  {d}");
        }
        match &files {
            Ok(n) => println!("  files   {n} match the manifest"),
            Err(e) => println!("  files   {e}"),
        }
        match &signature {
            Ok(s) | Err(s) => println!("  signature {s}"),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
