//! dblaunch's own messages: stderr, through tracing-subscriber, as
//! `dblaunch: warning: …` lines. `-q` keeps errors only, `-v`/`-vv` add
//! detail, `RUST_LOG` overrides both.

use std::fmt;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::INFO,
        (false, 1) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    };
    let registry = tracing_subscriber::registry();
    let _ = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => registry
            .with(EnvFilter::new(spec))
            .with(output())
            .try_init(),
        // Without RUST_LOG, a plain target filter: parsing an EnvFilter's
        // directives costs every launch more than all of dblaunch's logging
        // (a start-up tweak: docs/design.md, "Start-up cost").
        _ => registry
            .with(Targets::new().with_target("dblaunch", level))
            .with(output())
            .try_init(),
    };
}

/// Events to stderr, formatted by [`Plain`].
fn output<S>() -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(Plain)
}

/// `dblaunch: LEVEL: message` (no level word for plain information).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        write!(writer, "dblaunch: {level}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
