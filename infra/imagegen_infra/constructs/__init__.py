"""One construct per concern; the stack (imagegen_infra.stack) composes them."""
