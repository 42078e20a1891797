//! `lppsp frame decode`: an operator's tool to read frames off the wire.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use lppsp_core::wire::{decode_datagram, Limits, StreamDecoder};

#[derive(Subcommand)]
pub enum FrameCommand {
    /// Decode frames from FILE (or stdin) and print them, or the exact
    /// parse error with its byte offset.
    Decode {
        /// File holding one or more frames; stdin when absent.
        file: Option<PathBuf>,
        /// Turn bare LF line ends into CRLF first (for hand-written frames).
        #[arg(long)]
        lf: bool,
        /// The input is one UDP datagram: exactly one frame, nothing after.
        #[arg(long)]
        datagram: bool,
    },
}

pub fn run(cmd: FrameCommand) -> anyhow::Result<ExitCode> {
    let FrameCommand::Decode { file, lf, datagram } = cmd;
    let mut input = Vec::new();
    match &file {
        Some(path) => {
            input = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut input)
                .context("reading stdin")?;
        }
    }
    if lf {
        input = lf_to_crlf(&input);
    }
    if datagram {
        return Ok(match decode_datagram(&input, &Limits::datagram()) {
            Ok(frame) => {
                print!("{frame}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        });
    }
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut buf = bytes::BytesMut::from(&input[..]);
    let mut frames = 0usize;
    let mut failed = false;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                if frames > 0 {
                    println!();
                }
                frames += 1;
                print!("{frame}");
            }
            Ok(None) => break,
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
                if !e.is_recoverable() {
                    break;
                }
                eprintln!("(frame skipped; decoding goes on)");
            }
        }
    }
    if !failed && !decoder.is_idle() {
        eprintln!(
            "error: at byte {}: input ends inside a frame",
            decoder.consumed() + buf.len() as u64
        );
        failed = true;
    }
    if frames == 0 && !failed {
        eprintln!("error: no frame in the input");
        failed = true;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Replaces each LF not preceded by CR with CRLF.
fn lf_to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 16);
    let mut prev = 0u8;
    for &b in input {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}
