//! Who is online. A user is online while any of their sockets is connected (two tabs: still
//! online when one closes), and "in" a conversation while any of their sockets is in its room.
//! Counts are per socket so joins and leaves from several tabs balance out.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Presence {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// user id → number of connected sockets
    users: HashMap<String, usize>,
    /// conversation id → user id → number of that user's sockets in the room
    rooms: HashMap<String, HashMap<String, usize>>,
}

impl Presence {
    /// A socket of `user_id` connected; true when it is the user's first.
    pub fn connect(&self, user_id: &str) -> bool {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = s.users.entry(user_id.to_string()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// A socket of `user_id` went away; true when it was the user's last.
    pub fn disconnect(&self, user_id: &str) -> bool {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match s.users.get_mut(user_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                s.users.remove(user_id);
                true
            }
            None => false,
        }
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).users.contains_key(user_id)
    }

    pub fn join(&self, conversation_id: &str, user_id: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *s.rooms.entry(conversation_id.to_string()).or_default().entry(user_id.to_string()).or_insert(0) += 1;
    }

    pub fn leave(&self, conversation_id: &str, user_id: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(room) = s.rooms.get_mut(conversation_id) {
            if let Some(n) = room.get_mut(user_id) {
                *n -= 1;
                if *n == 0 {
                    room.remove(user_id);
                }
            }
            if room.is_empty() {
                s.rooms.remove(conversation_id);
            }
        }
    }

    /// Users with at least one socket in the conversation's room, sorted.
    pub fn online_in(&self, conversation_id: &str) -> Vec<String> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = s.rooms.get(conversation_id).map(|r| r.keys().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tabs_stay_online() {
        let p = Presence::default();
        assert!(p.connect("u"));
        assert!(!p.connect("u"));
        assert!(!p.disconnect("u"));
        assert!(p.is_online("u"));
        assert!(p.disconnect("u"));
        assert!(!p.is_online("u"));
    }

    #[test]
    fn rooms_count_sockets() {
        let p = Presence::default();
        p.join("c", "u");
        p.join("c", "u");
        p.join("c", "v");
        p.leave("c", "u");
        assert_eq!(p.online_in("c"), vec!["u", "v"]);
        p.leave("c", "u");
        p.leave("c", "v");
        assert!(p.online_in("c").is_empty());
    }
}
