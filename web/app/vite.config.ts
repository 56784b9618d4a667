/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a local `foundry up` (default port 8000).
const api = process.env.FOUNDRY_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", assetsDir: "assets", sourcemap: false },
  server: {
    proxy: {
      "/graphql": { target: api, ws: true },
      // Downloads only: the screen's own /documents route stays the app's.
      "^/documents/[^/]+/file$": { target: api },
    },
  },
  test: { environment: "jsdom", include: ["src/**/*.test.ts", "src/**/*.test.tsx"] },
});
