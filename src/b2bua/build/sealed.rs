//! [`Sealed`]: the proof that a message was built for one leg by the builders of this module.
//!
//! The transaction layer is reachable only through [`crate::b2bua::outbox::Outbox`], which
//! takes `Sealed` values; and only the code under `build` can make one, from the leg's own
//! Via, Contact and dialog identifiers, the screened header fields and the anchored body of
//! what the other leg sent (see [`crate::b2bua::hiding`]). A message received on one leg cannot
//! be handed to the other as it is: the compiler refuses, not a review.

use std::ops::Deref;

use crate::sip::Message;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed(Message);

impl Sealed {
    pub(in crate::b2bua::build) fn new(msg: Message) -> Sealed {
        Sealed(msg)
    }

    pub(in crate::b2bua::build) fn get_mut(&mut self) -> &mut Message {
        &mut self.0
    }

    /// RFC 3326: the border's own reason for a request it sends (a teardown). The text is a
    /// constant of the border, so nothing of a network's inside can get in this way.
    pub fn push_reason(&mut self, cause: u16, text: &'static str) {
        self.0
            .headers
            .push("Reason", format!("SIP;cause={cause};text=\"{text}\""));
    }
}

/// Reading a sealed message is free; changing it is not (see above).
impl Deref for Sealed {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.0
    }
}
