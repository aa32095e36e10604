// The New invoice form: add and remove lines in the page, and a live total in the currency's
// minor units (BigInt whole numbers, never floating-point money). Without this script the form
// still works: its Add and Remove buttons post it back, and the server adds the lines up. The
// server's total is the one that counts.
"use strict";

(function () {
  const form = document.getElementById("invoice-form");
  if (!form) return;
  const zero = (form.dataset.zeroDecimal || "").split(" ");
  const three = (form.dataset.threeDecimal || "").split(" ");
  const list = document.getElementById("lines");
  const output = document.getElementById("invoice-total");

  function exponent(code) {
    if (zero.includes(code)) return 0;
    if (three.includes(code)) return 3;
    return 2;
  }

  // "124.5" in a two-decimal currency is 12450 minor units; null when it does not read.
  function minorUnits(typed, exp) {
    const text = typed.trim();
    const match = /^(\d*)(?:\.(\d*))?$/.exec(text);
    if (!match || text === "" || text === ".") return null;
    const whole = match[1] || "0";
    const fraction = match[2] || "";
    if (fraction.length > exp) return null;
    const digits = whole + fraction.padEnd(exp, "0");
    const minor = BigInt(digits);
    return minor > 0n ? minor : null;
  }

  function quantity(typed) {
    const text = typed.trim();
    if (text === "") return 1n;
    return /^\d{1,9}$/.test(text) && BigInt(text) >= 1n ? BigInt(text) : null;
  }

  // As the server's `money::display`: 1,234.50 USD, 1,000 JPY, 1.500 KWD.
  function display(minor, code, exp) {
    const digits = String(minor).padStart(exp + 1, "0");
    const whole = digits.slice(0, digits.length - exp).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const fraction = exp > 0 ? "." + digits.slice(digits.length - exp) : "";
    return whole + fraction + " " + code.toUpperCase();
  }

  function rows() {
    return Array.from(list.querySelectorAll("li.line"));
  }

  function field(row, part) {
    return row.querySelector(".line-" + part + " input");
  }

  function update() {
    const code = form.elements.currency.value.trim().toLowerCase();
    if (!/^[a-z]{3}$/.test(code)) {
      output.textContent = "—";
      return;
    }
    const exp = exponent(code);
    let total = 0n;
    let readable = true;
    for (const row of rows()) {
      const [d, q, a] = ["description", "quantity", "amount"].map((p) => field(row, p).value.trim());
      if (d === "" && q === "" && a === "") continue;
      const amount = minorUnits(a, exp);
      const count = quantity(q);
      row.classList.toggle("unreadable", amount === null || count === null);
      if (amount === null || count === null) readable = false;
      else total += amount * count;
    }
    output.textContent = readable ? display(total, code, exp) : "— (a price or quantity does not read)";
  }

  // Keeps each row's ids, labels and Remove button in step with its place.
  function renumber() {
    rows().forEach((row, n) => {
      for (const part of ["description", "quantity", "amount"]) {
        const input = field(row, part);
        input.id = "line-" + n + "-" + part;
        row.querySelector(".line-" + part + " label").htmlFor = input.id;
      }
      const remove = row.querySelector(".remove-line");
      remove.value = "remove_line:" + n;
      const hidden = remove.querySelector(".visually-hidden");
      if (hidden) hidden.textContent = " line " + (n + 1);
    });
  }

  document.getElementById("add-line").addEventListener("click", (event) => {
    event.preventDefault();
    const all = rows();
    const fresh = all[all.length - 1].cloneNode(true);
    for (const input of fresh.querySelectorAll("input")) input.value = "";
    for (const error of fresh.querySelectorAll(".field-error")) error.remove();
    fresh.classList.remove("unreadable");
    list.appendChild(fresh);
    renumber();
    field(fresh, "description").focus();
    update();
  });

  list.addEventListener("click", (event) => {
    const remove = event.target.closest(".remove-line");
    if (!remove) return;
    event.preventDefault();
    const row = remove.closest("li.line");
    if (rows().length > 1) {
      row.remove();
    } else {
      for (const input of row.querySelectorAll("input")) input.value = "";
    }
    renumber();
    const first = rows()[0];
    if (first) field(first, "description").focus();
    update();
  });

  form.addEventListener("input", update);
  update();
})();
