import { createApp } from 'vue'
import App from './App.vue'
import { makeRouter } from './router'
import { onSignedOut, restore } from './session'
import './styles.css'

async function start() {
  // A key stored for this tab (a reload) signs in again before the first route resolves.
  await restore()
  const router = makeRouter()
  onSignedOut(() => {
    if (router.currentRoute.value.name !== 'sign-in') void router.push({ name: 'sign-in' })
  })
  createApp(App).use(router).mount('#app')
}

void start()
