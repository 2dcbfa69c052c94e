// Admin forms: each <form class="api-form"> is sent as JSON to its data-url, then the page reloads.
import { api } from "./api.js";

function value(input) {
  const type = input.dataset.type;
  if (type === "int") return input.value === "" ? null : Number.parseInt(input.value, 10);
  if (type === "bool") return input.value === "true";
  return input.value;
}

for (const form of /** @type {NodeListOf<HTMLFormElement>} */ (document.querySelectorAll("form.api-form"))) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const input of /** @type {NodeListOf<HTMLInputElement>} */ (form.querySelectorAll("input[name], select[name], textarea[name]"))) {
      body[input.name] = value(input);
    }
    const box = document.getElementById("form-error");
    try {
      await api(form.dataset.method || "POST", form.dataset.url, body);
      window.location.reload();
    } catch (error) {
      if (box) { box.textContent = error.message; box.hidden = false; }
    }
  });
}
