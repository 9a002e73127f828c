//! A worker thread that ends (or a Node environment torn down in any other
//! way) while some of its waits are still queued: their queue entries must
//! not linger until their turn. Each environment's pending waits are
//! cancelled when it is torn down.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use dblaunch_lock::Cancel;
use napi::Env;

/// The waits of each environment (by its address), while they may be
/// pending.
static PENDING: Mutex<Vec<(usize, Weak<Cancel>)>> = Mutex::new(Vec::new());
/// The environments whose teardown cancels their waits.
static HOOKED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Cancels `cancel` if `env` is torn down while it may still be waited on.
pub fn watch(env: &Env, cancel: &Arc<Cancel>) -> napi::Result<()> {
    let id = env.raw() as usize;
    let first = lock(&HOOKED).get_or_insert_with(HashSet::new).insert(id);
    if first {
        env.add_env_cleanup_hook(id, cancel_all)?;
    }
    let mut pending = lock(&PENDING);
    pending.retain(|(_, c)| c.strong_count() > 0);
    pending.push((id, Arc::downgrade(cancel)));
    Ok(())
}

fn cancel_all(id: usize) {
    if let Some(hooked) = lock(&HOOKED).as_mut() {
        hooked.remove(&id);
    }
    let ours: Vec<Arc<Cancel>> = {
        let mut pending = lock(&PENDING);
        let ours = pending
            .iter()
            .filter(|(env, _)| *env == id)
            .filter_map(|(_, c)| c.upgrade())
            .collect();
        pending.retain(|(env, c)| *env != id && c.strong_count() > 0);
        ours
    };
    for cancel in ours {
        cancel.cancel();
    }
}
