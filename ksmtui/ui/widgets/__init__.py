"""The widgets of the live UI: panels that draw EngineViews, the trees, and the modal screens."""
