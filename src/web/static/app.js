// billmirror's one script: progressive help only; every page works without it.
"use strict";

// Times arrive in UTC as <time datetime>; show them in the viewer's own time zone.
function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) {
      el.title = el.textContent;
      el.textContent = at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  }
}

// Forms with data-confirm ask before they post (Void, Disconnect, Disable).
function confirmations(root) {
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

// Buttons with data-copy copy the text of the element they name.
function copyButtons(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const source = document.getElementById(button.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(() => {
          button.textContent = "Copied";
        });
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  confirmations(document);
  copyButtons(document);
  if (window.billmirrorPage) window.billmirrorPage(document);
});

// The helpdesk sidebar: with no email in its URL, ask the Chatwoot Dashboard App host for the
// conversation's contact and reload with every email it has. The key stays in the URL: the
// message only says whom to look up, it never authorises anything.
function contactEmails(contact) {
  const found = [];
  const add = (value) => {
    if (typeof value === "string" && value.includes("@") && !found.includes(value)) found.push(value);
  };
  if (!contact || typeof contact !== "object") return found;
  add(contact.email);
  for (const list of [contact.emails, contact.additional_emails]) {
    if (Array.isArray(list)) list.forEach(add);
  }
  const extra = contact.additional_attributes;
  if (extra && typeof extra === "object") {
    add(extra.email);
    if (Array.isArray(extra.emails)) extra.emails.forEach(add);
  }
  return found;
}

function sidebar(body) {
  if (!body.dataset.sidebarWaiting || window.parent === window) return;
  window.addEventListener("message", (event) => {
    let message = event.data;
    if (typeof message === "string") {
      try { message = JSON.parse(message); } catch (_) { return; }
    }
    if (!message || message.event !== "appContext" || !message.data) return;
    const emails = contactEmails(message.data.contact);
    const query = new URLSearchParams({ key: body.dataset.sidebarKey });
    if (emails.length === 0) query.set("none", "1");
    emails.forEach((email) => query.append("email", email));
    window.location.replace("/sidebar?" + query.toString());
  });
  window.parent.postMessage("chatwoot-dashboard-app:fetch-info", "*");
}

document.addEventListener("DOMContentLoaded", () => sidebar(document.body));
