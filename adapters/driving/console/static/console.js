// keyledger console: copy buttons, the "I have stored this key" guard and the live
// grace deadline. Loaded as a file (the Content-Security-Policy allows no inline script).
"use strict";

function utc(date) {
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      const status = button.parentElement.querySelector(".copy-status");
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = "Copied.";
      } catch (error) {
        field.select();
        if (status) status.textContent = "Select the text and copy it yourself (Ctrl+C).";
      }
    });
  }

  const stored = document.getElementById("stored");
  if (stored) {
    let leaving = false;
    window.addEventListener("beforeunload", (event) => {
      if (!stored.checked && !leaving) {
        event.preventDefault();
        event.returnValue = "";
      }
    });
    for (const link of document.querySelectorAll("[data-leave-check]")) {
      link.addEventListener("click", (event) => {
        if (stored.checked) return;
        if (window.confirm("You have not ticked \"I have stored this key\". It is not shown again. Leave anyway?")) {
          leaving = true;
        } else {
          event.preventDefault();
        }
      });
    }
  }

  // The deadline if confirmed now: the server's (its clock decides), moved on as time passes.
  const deadline = document.querySelector("[data-deadline-ms]");
  if (deadline) {
    const atLoad = Date.now();
    const serverDeadline = Number(deadline.dataset.deadlineMs);
    const tick = () => { deadline.textContent = utc(new Date(serverDeadline + (Date.now() - atLoad))); };
    tick();
    window.setInterval(tick, 1000);
  }
});
