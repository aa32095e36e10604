//! How `billmirror sync` shows where a backfill stands: a bar per resource (objects, new events,
//! rate, elapsed) on a terminal, a log line per page otherwise (tests, cron, systemd), so logs
//! never fill with terminal control codes.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Progress;

pub struct ProgressDisplay {
    /// `None` when standard error is not a terminal.
    bars: Option<MultiProgress>,
    current: Option<(&'static str, ProgressBar)>,
}

impl ProgressDisplay {
    pub fn new() -> ProgressDisplay {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        ProgressDisplay {
            bars,
            current: None,
        }
    }

    pub fn update(&mut self, progress: &Progress) {
        let Some(bars) = &self.bars else {
            tracing::info!(
                resource = progress.resource,
                objects = progress.objects,
                new_events = progress.new_events,
                pages = progress.pages,
                rate = progress.objects_per_second,
                "backfill progress"
            );
            return;
        };
        if self.current.as_ref().map(|(r, _)| *r) != Some(progress.resource) {
            if let Some((_, done)) = self.current.take() {
                done.finish();
            }
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(style());
            bar.set_prefix(progress.resource);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            self.current = Some((progress.resource, bar));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_position(progress.objects.max(0) as u64);
            bar.set_message(format!(
                "{} new  {:.0}/s",
                progress.new_events, progress.objects_per_second
            ));
        }
    }

    /// Leaves the last bar on screen, complete.
    pub fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

impl Default for ProgressDisplay {
    fn default() -> Self {
        ProgressDisplay::new()
    }
}

fn style() -> ProgressStyle {
    // A constant template; it parses, and a broken one would still leave the default spinner.
    ProgressStyle::with_template("{spinner} {prefix:<16} {pos:>9} objects  {msg:<18} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}
