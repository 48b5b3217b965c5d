"""The app's routes, one module per area; each route's access check is in its signature."""
