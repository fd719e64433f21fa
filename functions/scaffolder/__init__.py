"""The scaffolder: renders a Copier template (the bundled default or any other, version-pinned) into a
new project. `render.render_project` does the rendering; `contract` reads the env contract."""
